"""The two pose errors papers report, on matched people's 3D joints: **MPJPE** (mean per-joint position error) and
**PA-MPJPE** (the same after Procrustes alignment of each predicted skeleton to its true one), in millimetres.

PA-MPJPE, as in HMR / SPIN / HMR2: per person, the similarity transform (one scale, a proper rotation, a
translation) that brings the predicted joints closest to the true ones in least squares, then MPJPE. The true joints
keep their metres. ``scipy.spatial.procrustes`` is not that: it rescales *both* sets to unit norm (shape-analysis
disparity, unitless), and ``scipy.linalg.orthogonal_procrustes`` may return a reflection. We use
``scipy.spatial.transform.Rotation.align_vectors`` (Kabsch: the best proper rotation of the centred sets) and the
closed-form optimal scale given that rotation (Umeyama 1991: the rotation does not depend on the scale), so no SVD
is written here.

A plugin's item evaluator (the tokenizer config's ``evaluator``) turns its items into joints and calls
:func:`pose_errors`; nothing here knows a body model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mpjpe", "pa_mpjpe", "pose_errors", "procrustes_align"]


def _joints(x: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    out = np.asarray(x, np.float64)
    if out.ndim != 3 or out.shape[-1] != 3:
        raise ValueError(f"joints must be (people, joints, 3), got {out.shape}")
    return out


def procrustes_align(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``pred`` (J, 3) moved by the least-squares similarity transform onto ``true`` (J, 3)."""
    from scipy.spatial.transform import Rotation

    mu_p, mu_t = pred.mean(0), true.mean(0)
    p, t = pred - mu_p, true - mu_t
    norm = float((p**2).sum())
    if norm == 0.0:  # a collapsed skeleton: only the translation is defined
        collapsed: np.ndarray = np.tile(mu_t, (len(pred), 1))
        return collapsed
    rotation, _ = Rotation.align_vectors(t, p)  # argmin_R sum |t_i - R p_i|^2, det R = +1
    rotated = rotation.apply(p)
    scale = float((t * rotated).sum()) / norm
    return np.asarray(scale * rotated + mu_t, np.float64)


def mpjpe(true: np.ndarray | Sequence[np.ndarray], pred: np.ndarray | Sequence[np.ndarray]) -> float:
    """Mean over people and joints of the Euclidean joint error, in the joints' unit times 1000 (metres -> mm)."""
    t, p = _joints(true), _joints(pred)
    return float(np.linalg.norm(t - p, axis=-1).mean() * 1000)


def pa_mpjpe(true: np.ndarray | Sequence[np.ndarray], pred: np.ndarray | Sequence[np.ndarray]) -> float:
    """MPJPE after aligning each predicted person to its true one (:func:`procrustes_align`), mm."""
    t, p = _joints(true), _joints(pred)
    aligned = np.stack([procrustes_align(pi, ti) for pi, ti in zip(p, t, strict=True)])
    return mpjpe(t, aligned)


def pose_errors(true: np.ndarray | Sequence[np.ndarray], pred: np.ndarray | Sequence[np.ndarray]) -> dict[str, float]:
    """``{"mpjpe_mm", "pa_mpjpe_mm"}`` of matched people's joints in metres, (people, joints, 3) each."""
    return {"mpjpe_mm": mpjpe(true, pred), "pa_mpjpe_mm": pa_mpjpe(true, pred)}
