"""Geometric metadata from normals and depth, as the 4M-21 paper defines it."""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, LabelError, ModalitySpec, SampleView


def geometric_complexity(normals: np.ndarray) -> float:
    """Angular (circular) variance of the unit normals on the sphere, ``1 - |mean normal|``: 0 when every pixel
    faces one way, larger when surfaces point in many directions (the paper's notion)."""
    vectors = normals.reshape(-1, 3)
    lengths = np.linalg.norm(vectors, axis=1)
    valid = vectors[lengths > 0.5] / lengths[lengths > 0.5, None]
    if len(valid) == 0:
        return 0.0
    return float(1.0 - np.linalg.norm(valid.mean(axis=0)))


def occlusion_score(depth: np.ndarray, threshold: float = 0.3) -> float:
    """Share of pixels whose Sobel gradient of (max-normalised) depth exceeds ``threshold`` (the paper uses 0.3):
    occlusion edges are where depth jumps."""
    import cv2

    valid = depth > 0
    if not valid.any():
        return 0.0
    normalised = np.where(valid, depth / depth[valid].max(), 1.0).astype(np.float32)
    gx = cv2.Sobel(normalised, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(normalised, cv2.CV_32F, 0, 1, ksize=3)
    return float((np.hypot(gx, gy) > threshold).mean())


class GeometricMetadata:
    """Geometric complexity from normals and occlusion score from depth."""

    version = "1"

    def label(self, sample: SampleView) -> dict[str, Any]:
        normals = np.asarray(sample.get("normal")["normal"], dtype=np.float32)
        depth = np.asarray(sample.get("depth")["depth"], dtype=np.float32)
        if normals.shape[:2] != depth.shape:
            raise LabelError(f"sample {sample.index}: normals {normals.shape} and depth {depth.shape} disagree")
        return {
            "values": {"geometric_complexity": geometric_complexity(normals), "occlusion_score": occlusion_score(depth)}
        }

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "circular variance of normals; share of Sobel depth edges > 0.3 (max-normalised depth)"}


def geometric_metadata_labeler(spec: ModalitySpec, context: LabelContext) -> GeometricMetadata:
    """Geometric metadata."""
    return GeometricMetadata()
