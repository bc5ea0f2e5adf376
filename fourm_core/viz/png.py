"""Writing pictures: one place that turns an (H, W, 3) uint8 array into a PNG file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["save_png"]


def save_png(picture: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save ``picture`` ((H, W, 3) or (H, W) uint8) as a PNG at ``path``, creating its folder; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(picture)).save(path)
    return path
