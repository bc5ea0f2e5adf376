"""Pictures laid out together: a row of tiles, a grid of rows, a labelled row with text underneath.

Every comparison figure fourm draws (tokenizer reconstructions, the demo's truth | reconstruction | prediction rows,
a generation's inputs and outputs) is one of these layouts, so they live here once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["labelled_grid", "tile_grid", "tile_row"]

#: Grey of a tile that has no picture (a missing truth or reconstruction).
BLANK = 200


def _tile(picture: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(picture)).resize((size, size), Image.NEAREST))


def tile_row(pictures: Sequence[np.ndarray | None], size: int = 96) -> np.ndarray:
    """Pictures side by side at ``size`` px, 2 px white gaps (rows of a comparison figure); a ``None`` picture is a
    grey tile."""
    blank = np.full((size, size, 3), BLANK, np.uint8)
    tiles = [blank if p is None else _tile(p, size) for p in pictures]
    gap = np.full((size, 2, 3), 255, np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)


def tile_grid(rows: Sequence[Sequence[np.ndarray]], size: int = 96, gap: int = 2) -> np.ndarray:
    """Rows of pictures at ``size`` px on white, ``gap`` px apart (right and below every tile)."""
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (size + gap), cols * (size + gap), 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            y, x = r * (size + gap), c * (size + gap)
            canvas[y : y + size, x : x + size] = _tile(picture, size)
    return canvas


def labelled_grid(
    tiles: Sequence[tuple[str, np.ndarray]], lines: Sequence[str], size: int = 128, text_width: int = 100
) -> Any:
    """One row of pictures, each labelled above, and below it ``lines`` of text wrapped to ``text_width``
    characters (a generation's inputs and outputs). A PIL image."""
    from PIL import Image, ImageDraw

    wrapped = [w for line in lines for w in (textwrap.wrap(line, text_width) or [""])]
    label_h, gap, line_h = 16, 4, 13
    width = max(len(tiles) * (size + gap) + gap, 6 * text_width + 2 * gap, 200)
    height = label_h + size + 2 * gap + line_h * len(wrapped) + (gap if wrapped else 0)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (label, picture) in enumerate(tiles):
        x = gap + i * (size + gap)
        canvas.paste(Image.fromarray(_tile(picture, size)), (x, label_h + gap))
        draw.text((x, 2), label[: size // 6], fill=(0, 0, 0))
    y = label_h + size + 2 * gap
    for line in wrapped:
        draw.text((gap, y), line, fill=(0, 0, 0))
        y += line_h
    return canvas
