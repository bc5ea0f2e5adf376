"""Labelers of sam_instance: the synthetic world's exact instance map, and a classical stand-in for SAM.

Photos get SAM itself (:mod:`fourm_sam_instance.teachers`); the felzenszwalb segments here run only when a user asks
for them by name (``--labeler sam_instance=felzenszwalb``; the labeler is ``explicit``, never picked by itself) and
say in their provenance that they are not SAM.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, LabelError, ModalitySpec, SampleView


def instances_and_boxes(instance_map: np.ndarray) -> dict[str, np.ndarray]:
    """Relabel ids to 1..n (0 stays background) and give each instance's pixel box (xmin, ymin, xmax, ymax)."""
    from scipy import ndimage

    ids, contiguous = np.unique(instance_map, return_inverse=True)
    contiguous = contiguous.reshape(instance_map.shape).astype(np.int32)
    if ids[0] != 0:  # no background pixel: shift so that 0 stays "none"
        contiguous += 1
    boxes = [(s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1) for s in ndimage.find_objects(contiguous) if s]
    return {"instances": contiguous, "boxes": np.asarray(boxes, np.int32).reshape(-1, 4)}


class SourceInstances:
    """The source's instance map (exact for the synthetic world), relabelled contiguously."""

    version = "1"

    def label(self, sample: SampleView) -> dict[str, Any]:
        return instances_and_boxes(np.asarray(sample.truth("instances")))

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "source instance map"}


class Felzenszwalb:
    """Classical graph-based segments (scikit-image's felzenszwalb), a stand-in for SAM that runs only on request.

    Not SAM: segments follow colour boundaries, not objects. Declared as its own named labeler so stores say which.
    """

    version = "1"

    def __init__(self, image_size: int, scale: float = 100.0, sigma: float = 0.8) -> None:
        self.scale, self.sigma = scale, sigma
        self.min_size = max(8, (image_size * image_size) // 200)

    def label(self, sample: SampleView) -> dict[str, Any]:
        from skimage.segmentation import felzenszwalb

        rgb = np.asarray(sample.get("rgb")["rgb"])
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise LabelError(f"sample {sample.index}: expected an HxWx3 image, got {rgb.shape}")
        segments = felzenszwalb(rgb, scale=self.scale, sigma=self.sigma, min_size=self.min_size)
        return instances_and_boxes(segments + 1)

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {
            "method": "felzenszwalb segments (not SAM)",
            "stand_in_for": "SAM (facebook/sam-vit-huge), at the user's request",
            "scale": self.scale,
            "sigma": self.sigma,
            "min_size": self.min_size,
        }


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceInstances:
    """Exact instances from the source."""
    return SourceInstances()


def felzenszwalb_labeler(spec: ModalitySpec, context: LabelContext) -> Felzenszwalb:
    """Classical segments, only when the user asks for them (never chosen in SAM's place by the plan)."""
    return Felzenszwalb(context.image_size)
