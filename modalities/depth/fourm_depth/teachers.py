"""The depth teacher for photos: Depth Anything V2, fine-tuned for metric depth, through transformers.

4M-21 pseudo-labels depth with Omnidata DPT-Hybrid. Its weights are PyTorch-Lightning pickles that no maintained
package loads (transformers' ``DPTForDepthEstimation`` has no Omnidata conversion), so this plugin runs the closest
maintained model that predicts what the plugin stores, metric depth in metres: Depth Anything V2's metric checkpoints
(``DepthAnythingForDepthEstimation``, ``depth_estimation_type="metric"``: a sigmoid head scaled by ``max_depth``,
20 m indoor, 80 m outdoor). Relative checkpoints (Depth Anything relative, ``Intel/dpt-hybrid-midas``) predict
affine-invariant inverse depth, not metres, and are refused rather than stored under a metric label.

The image goes in at ``resolution`` px (518 by default, the checkpoints' own input size; a multiple of the 14 px
patch), normalised with the checkpoint's mean / std (ImageNet); the predicted depth is resized to the store's image
size (bilinear, antialiased) and stored as float32 metres, 0 marking invalid pixels (non-finite predictions).

torch and transformers are imported here only; the plugin module stays torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core import plugin as fp

__all__ = ["DepthAnythingTeacher", "build", "checkpoint_facts", "tiny_config"]

#: ImageNet mean / std, what the checkpoints' ``preprocessor_config.json`` gives (used when it is absent)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Depth Anything's patch size: the input side must be a multiple of it
PATCH = 14


def tiny_config(max_depth: int = 20) -> Any:
    """A small metric :class:`~transformers.DepthAnythingConfig` (DINOv2 backbone, 32 wide, 4 layers): the
    random-init stand-in (``--allow-random-teachers`` without weights) and the tests' tiny checkpoint."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        image_size=56,
        patch_size=PATCH,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=PATCH,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="metric",
        max_depth=max_depth,
    )


def spread_convs(model: torch.nn.Module) -> None:
    """Re-draw the conv weights of a random-init model with std ``sqrt(1 / fan_in)``: transformers' init gives a
    near-constant depth (``sigmoid(~0) * max_depth``), which would hide any bug in what follows it, and a wider spread
    saturates the sigmoid (depth 0 or ``max_depth``). Uses torch's current seed."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=(1.0 / module.weight[0].numel()) ** 0.5)


def checkpoint_facts(path: Path | None) -> dict[str, Any]:
    """What a snapshot's ``config.json`` / ``preprocessor_config.json`` say (estimation type, max depth, mean / std),
    read without building the model; ValueError for a relative (not metric) checkpoint."""
    config: dict[str, Any] = {"depth_estimation_type": "metric", "max_depth": 20.0}
    processor: dict[str, Any] = {}
    if path is not None:
        config = json.loads((path / "config.json").read_text())
        if (path / "preprocessor_config.json").is_file():
            processor = json.loads((path / "preprocessor_config.json").read_text())
    kind = config.get("depth_estimation_type", "relative")
    if kind != "metric":
        raise ValueError(
            f"the depth teacher at {path} predicts {kind} depth (inverse depth up to scale and shift); this modality "
            "stores metric depth in metres: use a metric Depth Anything V2 checkpoint"
        )
    return {
        "depth_estimation_type": kind,
        "max_depth": float(config.get("max_depth") or 1.0),
        "mean": tuple(float(v) for v in processor.get("image_mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in processor.get("image_std", IMAGENET_STD)),
    }


class DepthAnythingTeacher(fp.HubTeacher):
    """Metric depth (metres, float32, store size) from a Depth Anything V2 metric checkpoint, in batches."""

    version = "1"

    def __init__(
        self,
        spec: fp.ModalitySpec,
        context: fp.LabelContext,
        model: fp.HubModel | Mapping[str, Any],
        resolution: int = 518,
        batch_size: int = 8,
    ) -> None:
        if resolution % PATCH:
            raise ValueError(f"{spec.name}: teacher resolution {resolution} is not a multiple of the {PATCH} px patch")
        super().__init__(spec, context, model, resolution, batch_size)
        self.out_size = int(context.image_size)
        self.facts = checkpoint_facts(self.path)

    def build(self, path: Path | None) -> torch.nn.Module:
        """The checkpoint (safetensors only), or a seeded tiny model of the same class when ``path`` is None."""
        from transformers import DepthAnythingForDepthEstimation

        if path is None:
            model = DepthAnythingForDepthEstimation(tiny_config(round(self.facts["max_depth"])))
            spread_convs(model)
            return model
        return DepthAnythingForDepthEstimation.from_pretrained(path, use_safetensors=True)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, R, R) float32 metric depth of a (B, 3, R, R) batch of [0, 1] images (R = ``resolution``)."""
        mean = torch.tensor(self.facts["mean"], device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.facts["std"], device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        depth = self.network(pixel_values=(batch - mean) / std).predicted_depth.float()
        return torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).clamp_min_(0.0)

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, np.ndarray]]:
        depth = self.predict(batch)
        if depth.shape[-2:] != (self.out_size, self.out_size):
            depth = F.interpolate(
                depth[:, None],
                size=(self.out_size, self.out_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )[:, 0].clamp_(0.0, self.facts["max_depth"])  # the head's range, against resampling round-off
        out = depth.cpu().numpy().astype(np.float32)
        return [{"depth": out[i]} for i in range(len(samples))]

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "paper_teacher": "Omnidata DPT-Hybrid (no maintained package loads its weights)",
            "values": f"metric z-depth in metres (sigmoid head x max_depth {self.facts['max_depth']:g} m), 0 = invalid",
            "depth_estimation_type": self.facts["depth_estimation_type"],
            "max_depth": self.facts["max_depth"],
            "mean": list(self.facts["mean"]),
            "std": list(self.facts["std"]),
            "output_size": self.out_size,
            "resize": "input bicubic to resolution; depth bilinear (antialiased) to the store size",
        }


def build(
    spec: fp.ModalitySpec,
    context: fp.LabelContext,
    model: Mapping[str, Any],
    resolution: int = 518,
    batch_size: int = 8,
) -> DepthAnythingTeacher:
    """The depth labeler ``fp.teacher_labeler`` declares (``model``: the HubModel, as its JSON)."""
    return DepthAnythingTeacher(spec, context, model, resolution=resolution, batch_size=batch_size)
