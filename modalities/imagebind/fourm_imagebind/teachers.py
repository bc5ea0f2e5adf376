"""ImageBind-H/14's image tower: the OpenCLIP ViT-H/14 (LAION-2B) that ImageBind froze, loaded by timm from
``timm/vit_huge_patch14_clip_224.laion2b``.

ImageBind initialises its vision encoder from OpenCLIP ViT-H/14 LAION-2B and keeps it frozen, so the image tokens of
``imagebind_huge`` are those of that tower; no maintained package loads ImageBind's own checkpoint (a pickle), and
timm ships the tower as safetensors. What is stored is what ml-4m's ImageBind tokenizers were trained on
(``run_training_vqvae.py``: ``tokens[:, 1:]`` for the map, ``tokens[:, 0]`` for ``ImageBind-H14-global``): the
tokens after the tower's final LayerNorm (ImageBind's vision-head norm; timm's ``norm``), 1280-d, before the 1024-d
joint projection: the patch tokens as a ``(grid, grid, 1280)`` float16 map and the CLS token as a ``(1280,)`` float32
vector (``cls``, what ``imagebind_global`` copies). The input is the RGB image resized to ``grid * 14`` pixels
(224 px in the paper preset: 16 x 16 tokens) and normalised with the ImageNet mean / std, as ml-4m's tokenizer
configs say (``imagenet_default_mean_and_std: True``; not CLIP's own mean / std).

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

__all__ = ["ARCHITECTURE", "RANDOM_CONFIG", "ImageBindTeacher", "build"]

#: The timm class of the real teacher (its hub repo's ``config.json`` names the same architecture).
ARCHITECTURE = "vit_huge_patch14_clip_224"
#: The random-init stand-in: the same class and the stored width (1280), one block with a narrow MLP.
RANDOM_CONFIG: dict[str, Any] = {"embed_dim": 1280, "depth": 1, "num_heads": 16, "mlp_ratio": 0.25, "num_classes": 0}
#: The weight file read from a snapshot (safetensors only).
WEIGHTS_FILE = "model.safetensors"


class ImageBindTeacher(fp.HubTeacher):
    """ImageBind-H/14 image tokens after the final LayerNorm, CLS and patch grid (see the module docstring)."""

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
        """The timm tower from the snapshot (its ``config.json`` and ``model.safetensors``), or the random stand-in;
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
        """ImageNet-normalise, run the tower, split the normed tokens into CLS and the patch grid (no projection)."""
        net = self.network
        mean = torch.tensor(self.mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        tokens = net.forward_features((batch - mean) / std).float()  # (B, 1 + g*g, 1280), after the final norm
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
            "layer": "tokens after the final LayerNorm, before the 1024-d projection; CLS and patches (ml-4m)",
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
    width: int = 1280,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    batch_size: int = 16,
    input_modality: str = "rgb",
    input_array: str = "rgb",
    patch_array: str = "features",
    pooled_array: str = "cls",
) -> ImageBindTeacher:
    """The labeler factory ``fp.teacher_labeler`` names (``model`` is the plugin's ``fp.HubModel``)."""
    return ImageBindTeacher(
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
