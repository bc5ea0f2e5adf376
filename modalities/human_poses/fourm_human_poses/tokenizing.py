"""What the generic MLP + Memcodes tokenizer needs from this plugin: the items (one 207-value body pose per person)
and the pose-specific bound metric (joint position error)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def pose_items(sample: dict[str, Any], size: int = 0) -> np.ndarray:
    """The body poses (N, 207) of the people in one stored sample (N may be 0)."""
    humans = sample["humans"] or []
    poses = [np.asarray(h["body_pose"], np.float32) for h in humans]
    for i, pose in enumerate(poses):
        if pose.shape != (207,):
            raise ValueError(f"human_poses: person {i} has a body_pose of {pose.shape}, expected 207 values")
    return np.stack(poses) if poses else np.zeros((0, 207), np.float32)


def joint_error(true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean per-joint position error (mm) of the average body posed by the true and reconstructed rotations, and
    the same after Procrustes alignment (scale, rotation, translation: PA-MPJPE, as HMR/SPIN report it).

    The rotations are re-orthogonalised (nearest rotation by SVD) first, since reconstructions are not exactly
    rotation matrices."""
    from fourm_core.plugin import joints_from_pose

    def rotations(x: np.ndarray) -> np.ndarray:
        u, _, vt = np.linalg.svd(np.asarray(x, np.float64).reshape(23, 3, 3))
        r = u @ vt
        flip = np.linalg.det(r) < 0
        u[flip, :, -1] *= -1
        return (u @ vt).reshape(-1)

    from fourm_core.plugin import pose_errors

    joints = [(joints_from_pose(rotations(t)), joints_from_pose(rotations(p))) for t, p in zip(true, pred, strict=True)]
    return pose_errors([t for t, _ in joints], [p for _, p in joints])  # mpjpe_mm and pa_mpjpe_mm
