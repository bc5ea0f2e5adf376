"""The paper's DINOv2 teacher: DINOv2 ViT-B/14 (LVD-142M), loaded by timm from ``timm/vit_base_patch14_dinov2.lvd142m``.

What is stored is what ml-4m's DINOv2 tokenizers were trained on (``run_training_vqvae.py`` / ``save_vq_tokens.py``:
``model(x, is_training=True)``): ``x_norm_patchtokens``, the patch tokens after the final LayerNorm, as a
``(grid, grid, 768)`` float16 map, and ``x_norm_clstoken``, the CLS token after the same norm, as a ``(768,)``
float32 vector (``cls``, what ``dinov2_global`` copies). In timm these are the rows of ``forward_features`` (which
ends with that norm; the model has no head). The input is the RGB image resized to ``grid * 14`` pixels (224 px in
the paper preset: 16 x 16 tokens) and normalised with the ImageNet mean / std, as ml-4m's tokenizer configs say
(``imagenet_default_mean_and_std: True``). The checkpoint's 37 x 37 position embedding (518 px) is resampled by timm
to the run's grid when the model is built (bicubic; the original DINOv2 code interpolates it per forward pass).

Weights are read from the snapshot's ``model.safetensors`` only (never a pickle). Without weights and with
``--allow-random-teachers``, the same timm class is built from :data:`RANDOM_CONFIG` under a fixed seed, and the
provenance says ``random-init``. torch and timm are imported here only; the plugin module stays torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core import plugin as fp

__all__ = ["ARCHITECTURE", "RANDOM_CONFIG", "Dinov2Teacher", "build"]

#: The timm class of the real teacher (its hub repo's ``config.json`` names the same architecture).
ARCHITECTURE = "vit_base_patch14_dinov2"
#: The random-init stand-in: the same class and the stored width (768), one block with a narrow MLP; LayerScale
#: starts at 1 (the real init, 1e-5, would leave the CLS token blind to the image in a one-block model).
RANDOM_CONFIG: dict[str, Any] = {
    "embed_dim": 768,
    "depth": 1,
    "num_heads": 12,
    "mlp_ratio": 0.25,
    "num_classes": 0,
    "init_values": 1.0,
}
#: The weight file read from a snapshot (safetensors only).
WEIGHTS_FILE = "model.safetensors"


class Dinov2Teacher(fp.HubTeacher):
    """DINOv2-B/14 ``x_norm_patchtokens`` and ``x_norm_clstoken`` (see the module docstring)."""

    version = "2"

    def __init__(
        self,
        spec: fp.ModalitySpec,
        context: fp.LabelContext,
        model: fp.HubModel | Mapping[str, Any],
        *,
        patch_size: int,
        width: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int,
        input_modality: str,
        input_array: str,
        patch_array: str,
        pooled_array: str,
    ) -> None:
        grid = spec.layout(context.preset).grid
        if grid is None:
            raise ValueError(f"modality {spec.name!r} has no token grid in preset {context.preset!r}")
        self.grid, self.patch_size, self.width = int(grid), int(patch_size), int(width)
        self.patch_array, self.pooled_array = patch_array, pooled_array
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        super().__init__(
            spec,
            context,
            model,
            resolution=self.grid * self.patch_size,
            batch_size=batch_size,
            image_modality=input_modality,
            image_array=input_array,
        )

    def build(self, path: Path | None) -> torch.nn.Module:
        """The timm model from the snapshot (its ``config.json`` and ``model.safetensors``), or the random stand-in;
        the position embedding is resampled by timm to this run's grid."""
        import timm

        if path is None:
            net = timm.create_model(ARCHITECTURE, pretrained=False, img_size=self.resolution, **RANDOM_CONFIG)
        else:
            if not (path / WEIGHTS_FILE).is_file():
                raise fp.TeacherUnavailable(
                    f"teacher {self.model_id}: {path} has no {WEIGHTS_FILE} (safetensors only); "
                    f"fetch it with `hf download {self.model_id}`"
                )
            net = timm.create_model(f"local-dir:{path}", pretrained=True, img_size=self.resolution)
        patch = tuple(net.patch_embed.patch_size)
        if patch != (self.patch_size, self.patch_size) or net.embed_dim != self.width:
            raise ValueError(
                f"teacher {self.model_id}: patch {patch} and width {net.embed_dim}, the modality needs patch "
                f"{self.patch_size} and {self.width}-wide features"
            )
        return net

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, np.ndarray]]:
        """ImageNet-normalise, run the model, split the normed tokens into CLS and the patch grid."""
        net = self.network
        mean = torch.tensor(self.mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        tokens = net.forward_features((batch - mean) / std).float()  # (B, 1 + g*g, 768), after the final norm
        patches, cls = tokens[:, net.num_prefix_tokens :], tokens[:, 0]
        b, n, c = patches.shape
        if n != self.grid * self.grid:
            raise RuntimeError(f"teacher {self.model_id} gave {n} patch tokens, expected {self.grid}x{self.grid}")
        features = patches.reshape(b, self.grid, self.grid, c).cpu().numpy().astype(np.float16)
        pooled = cls.cpu().numpy().astype(np.float32)
        return [{self.patch_array: f, self.pooled_array: p} for f, p in zip(features, pooled)]

    def dims(self) -> dict[str, int]:
        return {"h": self.grid, "w": self.grid, "C": self.width}

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "layer": "x_norm_patchtokens / x_norm_clstoken: tokens after the final LayerNorm (ml-4m)",
            "patch_size": self.patch_size,
            "grid": self.grid,
            "feature_dim": self.width,
            "normalisation": "imagenet",
            "mean": list(self.mean),
            "std": list(self.std),
            **({"random_config": dict(RANDOM_CONFIG)} if self.random_init else {}),
        }


def build(
    spec: fp.ModalitySpec,
    context: fp.LabelContext,
    model: Mapping[str, Any],
    patch_size: int = 14,
    width: int = 768,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    batch_size: int = 16,
    input_modality: str = "rgb",
    input_array: str = "rgb",
    patch_array: str = "features",
    pooled_array: str = "cls",
) -> Dinov2Teacher:
    """The labeler factory ``fp.teacher_labeler`` names (``model`` is the plugin's ``fp.HubModel``)."""
    return Dinov2Teacher(
        spec,
        context,
        model,
        patch_size=patch_size,
        width=width,
        mean=mean,
        std=std,
        batch_size=batch_size,
        input_modality=input_modality,
        input_array=input_array,
        patch_array=patch_array,
        pooled_array=pooled_array,
    )
