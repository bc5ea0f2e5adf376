"""Pictures of stored-form arrays for tokenizer reports: originals next to reconstructions.

One function per transform kind (keyed by transform name, never by modality), each returning an ``(H, W, 3)``
uint8 image, or ``None`` for data that is not a picture (vectors, embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["comparison_png", "picture"]


def _ramp(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return (np.stack([x**0.7, 0.2 + 0.7 * x, 0.9 * (1 - x) + 0.1], -1) * 255).astype(np.uint8)


def _palette(ids: np.ndarray) -> np.ndarray:
    table = np.random.default_rng(7).integers(40, 256, (max(int(ids.max()) + 1, 256), 3)).astype(np.uint8)
    table[0] = 0
    return table[ids.astype(np.int64)]


def picture(transform: str, raw: np.ndarray) -> np.ndarray | None:
    """An RGB picture of ``raw`` as the transform ``transform`` stores it."""
    a = np.asarray(raw)
    if transform == "color":
        return a if a.dtype == np.uint8 else np.clip(a.astype(np.float32) * 255, 0, 255).astype(np.uint8)
    if transform == "robust_depth":
        valid = a != 0
        if not valid.any():
            return np.zeros((*a.shape, 3), np.uint8)
        if (a[valid] > 0).all():  # metres: shown in log depth like the standardised reconstructions
            a = np.where(valid, np.log(np.where(valid, a, 1.0)), 0.0)
        lo, hi = np.percentile(a[valid], [2, 98])
        return _ramp(1 - (a - lo) / max(hi - lo, 1e-6)) * valid[..., None]
    if transform == "unit_vectors":
        return np.clip((a.astype(np.float32) + 1) * 127.5, 0, 255).astype(np.uint8)
    if transform == "classes":
        return _palette(a)
    if transform in ("edges", "masks"):
        g = ((a > 0) * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, -1)
    if transform == "features":
        x = a.astype(np.float32).reshape(-1, a.shape[-1])
        x = x - x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        proj = x @ vt[:3].T
        proj = (proj - proj.min(0)) / np.maximum(np.ptp(proj, 0), 1e-6)
        return (proj.reshape(*a.shape[:2], 3) * 255).astype(np.uint8)
    return None


def comparison_png(
    transform: str,
    originals: Sequence[np.ndarray],
    rows: dict[str, Sequence[np.ndarray]],
    path: str | Path,
    size: int = 96,
) -> Path | None:
    """A grid: the first row shows originals, each further row one reconstruction (plain, diffusion, ...)."""
    from fourm_core.viz.grid import tile_grid
    from fourm_core.viz.png import save_png

    pics = [[picture(transform, x) for x in originals]] + [[picture(transform, x) for x in r] for r in rows.values()]
    if any(p is None for row in pics for p in row):
        return None
    return save_png(tile_grid(pics, size), path)  # type: ignore[arg-type]
