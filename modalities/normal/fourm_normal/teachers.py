"""Surface normals for photos, derived from a depth teacher's prediction (Depth Anything V2 metric, transformers).

4M-21 pseudo-labels normals with Omnidata DPT-Hybrid's normal head; no maintained package loads those weights and
transformers has no surface-normal estimator, so, as the issue allows, the normals are *computed from predicted
depth* and named so in provenance (``"method": "derived from depth (<model id>)"``).

The teacher runs once per batch at ``resolution`` px (518, Depth Anything's own input size), exactly as the depth
plugin runs it (same checkpoints, same normalisation), and the normals are computed at that resolution, then
area-resized to the store's image size and renormalised. Camera assumption (a photo carries no intrinsics): a
pinhole with the principal point at the image centre, square pixels and a full horizontal field of view of
``fov_degrees`` (60 by default, inside the synthetic world's 50..72 range), so the focal length is
``R / 2 / tan(fov / 2)`` pixels at side ``R``. Each pixel is back-projected, ``P = z * ((u - cx) / f, (v - cy) / f,
1)``, with ``z`` the predicted z-depth, and the normal is the cross product of the image-space tangents ``dP/dv x
dP/du``. Each tangent is the one-sided difference (left or right, up or down) whose depth step is smaller, so a pixel
next to an occlusion edge takes its tangent from its own surface instead of from across the jump. Normals are unit
vectors in the plugin's camera frame (x right, y down, z forward), turned to face the camera (``n . P < 0``), as the
synthetic world's renderer stores them; ``(0, 0, 0)`` marks pixels without valid depth.

torch and transformers are imported here only; the plugin module stays torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core import plugin as fp

__all__ = ["DepthNormalTeacher", "build", "normals_from_depth", "resize_normals", "tiny_config"]

#: ImageNet mean / std, what the checkpoints' ``preprocessor_config.json`` gives (used when it is absent)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Depth Anything's patch size: the input side must be a multiple of it
PATCH = 14


def _one_sided(points: torch.Tensor, valid: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-pixel tangent along image axis ``dim`` (-1: u, -2: v) of ``points`` (B, 3, H, W): of the forward and
    backward differences, the one whose depth (z) step is smaller; differences touching an invalid pixel or the
    border count as infinitely large. Zero where neither exists."""
    n = points.shape[dim]
    diff = points.narrow(dim, 1, n - 1) - points.narrow(dim, 0, n - 1)
    ok = valid.narrow(dim, 1, n - 1) & valid.narrow(dim, 0, n - 1)
    step = torch.where(ok, diff[:, 2].abs(), torch.full_like(diff[:, 2], math.inf))
    # F.pad pads the last dimension first: (left, right) along u, then (top, bottom) along v
    after, before = ((0, 1), (1, 0)) if dim == -1 else ((0, 0, 0, 1), (0, 0, 1, 0))
    fwd, bwd = F.pad(diff, after), F.pad(diff, before)
    fwd_step = F.pad(step[:, None], after, value=math.inf)[:, 0]
    bwd_step = F.pad(step[:, None], before, value=math.inf)[:, 0]
    use_fwd = fwd_step <= bwd_step
    tangent = torch.where(use_fwd[:, None], fwd, bwd)
    exists = torch.isfinite(torch.minimum(fwd_step, bwd_step))
    return tangent * exists[:, None]


def normals_from_depth(depth: torch.Tensor, fov_degrees: float = 60.0) -> torch.Tensor:
    """(B, H, W, 3) float32 unit normals of z-depth maps ``depth`` (B, H, W) under a centred pinhole camera with a
    full horizontal field of view ``fov_degrees``: camera frame x right, y down, z forward, facing the camera;
    ``(0, 0, 0)`` where the depth is not positive and finite or no tangent exists (see the module docstring)."""
    if not 0.0 < fov_degrees < 180.0:
        raise ValueError(f"fov_degrees {fov_degrees} is not inside (0, 180)")
    depth = depth.float()
    _, h, w = depth.shape
    focal = w / 2.0 / math.tan(math.radians(fov_degrees) / 2.0)
    valid = torch.isfinite(depth) & (depth > 0)
    z = torch.where(valid, depth, torch.zeros_like(depth))
    u = (torch.arange(w, device=depth.device, dtype=torch.float32) + 0.5 - w / 2.0) / focal
    v = (torch.arange(h, device=depth.device, dtype=torch.float32) + 0.5 - h / 2.0) / focal
    points = torch.stack((u.view(1, 1, w) * z, v.view(1, h, 1) * z, z), dim=1)  # (B, 3, H, W)
    du = _one_sided(points, valid, -1)
    dv = _one_sided(points, valid, -2)
    normal = torch.cross(dv, du, dim=1)
    facing = (normal * points).sum(dim=1, keepdim=True) > 0
    normal = torch.where(facing, -normal, normal)
    length = normal.norm(dim=1, keepdim=True)
    good = valid[:, None] & (length > 1e-12)
    normal = torch.where(good, normal / length.clamp_min(1e-12), torch.zeros_like(normal))
    return normal.permute(0, 2, 3, 1).contiguous()


def resize_normals(normals: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, 3) normals to (B, size, size, 3): area-weighted average (antialiased bilinear) of the vectors, then
    renormalised. A store pixel is invalid ``(0, 0, 0)`` when most of what it averages is invalid (or the average
    vanishes); a valid one keeps its averaged direction however much its normals disagree."""
    if normals.shape[1:3] == (size, size):
        return normals
    vectors = normals.permute(0, 3, 1, 2)
    valid = (vectors.abs().sum(dim=1, keepdim=True) > 0).float()
    x = F.interpolate(vectors, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    share = F.interpolate(valid, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    length = x.norm(dim=1, keepdim=True)
    keep = (share >= 0.5) & (length > 1e-6)
    x = torch.where(keep, x / length.clamp_min(1e-6), torch.zeros_like(x))
    return x.permute(0, 2, 3, 1).contiguous()


def tiny_config(max_depth: int = 20) -> Any:
    """A small metric :class:`~transformers.DepthAnythingConfig` (DINOv2 backbone, 32 wide, 4 layers): the
    random-init stand-in and the tests' tiny checkpoint (the same as the depth plugin's)."""
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


def _checkpoint_facts(path: Path | None) -> dict[str, Any]:
    """Estimation type, max depth and mean / std of a snapshot (config files only); ValueError for a relative
    checkpoint, whose inverse depth up to scale and shift gives no geometry to take normals of."""
    config: dict[str, Any] = {"depth_estimation_type": "metric", "max_depth": 20.0}
    processor: dict[str, Any] = {}
    if path is not None:
        config = json.loads((path / "config.json").read_text())
        if (path / "preprocessor_config.json").is_file():
            processor = json.loads((path / "preprocessor_config.json").read_text())
    kind = config.get("depth_estimation_type", "relative")
    if kind != "metric":
        raise ValueError(
            f"the depth teacher at {path} predicts {kind} depth (inverse depth up to scale and shift), which has no "
            "3D shape to take normals of: use a metric Depth Anything V2 checkpoint"
        )
    return {
        "max_depth": float(config.get("max_depth") or 1.0),
        "mean": tuple(float(v) for v in processor.get("image_mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in processor.get("image_std", IMAGENET_STD)),
    }


class DepthNormalTeacher(fp.HubTeacher):
    """Camera-frame unit normals (float32, store size) derived from a Depth Anything V2 metric prediction."""

    version = "1"

    def __init__(
        self,
        spec: fp.ModalitySpec,
        context: fp.LabelContext,
        model: fp.HubModel | Mapping[str, Any],
        resolution: int = 518,
        batch_size: int = 8,
        fov_degrees: float = 60.0,
    ) -> None:
        if resolution % PATCH:
            raise ValueError(f"{spec.name}: teacher resolution {resolution} is not a multiple of the {PATCH} px patch")
        if not 0.0 < fov_degrees < 180.0:
            raise ValueError(f"{spec.name}: fov_degrees {fov_degrees} is not inside (0, 180)")
        super().__init__(spec, context, model, resolution, batch_size)
        self.out_size = int(context.image_size)
        self.fov_degrees = float(fov_degrees)
        self.facts = _checkpoint_facts(self.path)

    def build(self, path: Path | None) -> torch.nn.Module:
        """The depth checkpoint (safetensors only), or a seeded tiny model of the same class when ``path`` is None
        (its conv weights re-drawn wider, so the random depth, and so the normals, are not flat)."""
        from transformers import DepthAnythingForDepthEstimation

        if path is None:
            model = DepthAnythingForDepthEstimation(tiny_config(round(self.facts["max_depth"])))
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.init.normal_(module.weight, std=(1.0 / module.weight[0].numel()) ** 0.5)
            return model
        return DepthAnythingForDepthEstimation.from_pretrained(path, use_safetensors=True)

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, np.ndarray]]:
        mean = torch.tensor(self.facts["mean"], device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.facts["std"], device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        depth = self.network(pixel_values=(batch - mean) / std).predicted_depth.float()
        with torch.autocast(device_type=batch.device.type, enabled=False):  # the geometry in fp32 whatever the run
            normals = resize_normals(normals_from_depth(depth, self.fov_degrees), self.out_size)
        out = normals.cpu().numpy().astype(np.float32)
        return [{"normal": out[i]} for i in range(len(samples))]

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "method": f"derived from depth ({self.model_id})",
            "paper_teacher": "Omnidata DPT-Hybrid normals (no maintained package loads its weights)",
            "camera": (
                f"pinhole, principal point at the centre, square pixels, horizontal field of view {self.fov_degrees:g} "
                "degrees"
            ),
            "fov_degrees": self.fov_degrees,
            "normals": (
                "dP/dv x dP/du of the back-projected depth, one-sided differences with the smaller depth step, facing "
                "the camera; camera frame x right, y down, z forward; (0, 0, 0) = invalid"
            ),
            "mean": list(self.facts["mean"]),
            "std": list(self.facts["std"]),
            "output_size": self.out_size,
            "resize": "input bicubic to resolution; normals area-averaged (antialiased bilinear) and renormalised",
        }


def build(
    spec: fp.ModalitySpec,
    context: fp.LabelContext,
    model: Mapping[str, Any],
    resolution: int = 518,
    batch_size: int = 8,
    fov_degrees: float = 60.0,
) -> DepthNormalTeacher:
    """The normal labeler ``fp.teacher_labeler`` declares (``model``: the depth teacher's HubModel, as its JSON)."""
    return DepthNormalTeacher(
        spec, context, model, resolution=resolution, batch_size=batch_size, fov_degrees=fov_degrees
    )
