"""The paper's CLIP teacher: OpenAI CLIP ViT-B/16, its image tower loaded by timm from the hub repo
``timm/vit_base_patch16_clip_224.openai``.

What is stored is what ml-4m's CLIP tokenizer was trained on (``run_training_vqvae.py`` / ``save_vq_tokens.py``:
``visual(x, return_final_tokens_no_cls=True)``): every patch token after the tower's final LayerNorm (``ln_post``,
timm's ``norm``), multiplied by CLIP's projection (``proj``, 768 -> 512; timm's ``head``), the CLS token dropped, as a
``(grid, grid, 512)`` float16 map. The input is the RGB image resized to ``grid * 16`` pixels (224 px in the paper
preset: 14 x 14 tokens) and normalised with the ImageNet mean / std, as ml-4m's tokenizer configs say
(``imagenet_default_mean_and_std: True``; not CLIP's own mean / std). OpenAI CLIP uses QuickGELU, so the timm tower
is built with ``act_layer="quick_gelu"`` (timm's plain CLIP tower uses GELU: "use quickgelu model variant for
original results").

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

__all__ = ["ARCHITECTURE", "RANDOM_CONFIG", "ClipTeacher", "build"]

#: The timm class of the real teacher (its hub repo's ``config.json`` names the same architecture).
ARCHITECTURE = "vit_base_patch16_clip_224"
#: timm arguments the OpenAI weights need on top of the architecture's defaults.
MODEL_KWARGS: dict[str, Any] = {"act_layer": "quick_gelu"}
#: The random-init stand-in: the same class, narrow and shallow, with the real 512-wide projection.
RANDOM_CONFIG: dict[str, Any] = {"embed_dim": 64, "depth": 2, "num_heads": 2, "num_classes": 512}
#: The weight file read from a snapshot (safetensors only).
WEIGHTS_FILE = "model.safetensors"


class ClipTeacher(fp.HubTeacher):
    """CLIP-B/16 patch tokens after ``ln_post``, projected to 512 (see the module docstring)."""

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
    ) -> None:
        grid = spec.layout(context.preset).grid
        if grid is None:
            raise ValueError(f"modality {spec.name!r} has no token grid in preset {context.preset!r}")
        self.grid, self.patch_size, self.width, self.patch_array = int(grid), int(patch_size), int(width), patch_array
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
            net = timm.create_model(
                ARCHITECTURE, pretrained=False, img_size=self.resolution, **{**MODEL_KWARGS, **RANDOM_CONFIG}
            )
        else:
            if not (path / WEIGHTS_FILE).is_file():
                raise fp.TeacherUnavailable(
                    f"teacher {self.model_id}: {path} has no {WEIGHTS_FILE} (safetensors only); "
                    f"fetch it with `hf download {self.model_id}`"
                )
            net = timm.create_model(f"local-dir:{path}", pretrained=True, img_size=self.resolution, **MODEL_KWARGS)
        patch = tuple(net.patch_embed.patch_size)
        out = getattr(net.head, "out_features", None)
        if patch != (self.patch_size, self.patch_size) or out != self.width:
            raise ValueError(
                f"teacher {self.model_id}: patch {patch} and projection width {out}, the modality needs patch "
                f"{self.patch_size} and {self.width}-wide features"
            )
        return net

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, np.ndarray]]:
        """ImageNet-normalise, run the tower, project every patch token with CLIP's ``proj``."""
        net = self.network
        mean = torch.tensor(self.mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        tokens = net.forward_features((batch - mean) / std)  # (B, 1 + g*g, 768), after ln_post
        patches = net.head(tokens[:, net.num_prefix_tokens :])  # @ proj: (B, g*g, 512)
        b, n, c = patches.shape
        if n != self.grid * self.grid:
            raise RuntimeError(f"teacher {self.model_id} gave {n} patch tokens, expected {self.grid}x{self.grid}")
        features = patches.float().reshape(b, self.grid, self.grid, c).cpu().numpy().astype(np.float16)
        return [{self.patch_array: f} for f in features]

    def dims(self) -> dict[str, int]:
        return {"h": self.grid, "w": self.grid, "C": self.width}

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "act_layer": MODEL_KWARGS["act_layer"],
            "layer": "final LayerNorm (ln_post) patch tokens @ CLIP projection, CLS dropped (ml-4m)",
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
    patch_size: int = 16,
    width: int = 512,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    batch_size: int = 16,
    input_modality: str = "rgb",
    input_array: str = "rgb",
    patch_array: str = "features",
) -> ClipTeacher:
    """The labeler factory ``fp.teacher_labeler`` names (``model`` is the plugin's ``fp.HubModel``)."""
    return ClipTeacher(
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
    )
