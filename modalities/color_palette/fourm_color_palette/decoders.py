"""Pictures of color_palette values: one swatch per colour, side by side, in palette order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fourm_core.plugin import RenderContext


class PaletteDecoder:
    """Vertical bands of equal width (the last takes the rounding remainder), each filled with one colour."""

    def render(self, value: Sequence[Sequence[int]], context: RenderContext) -> np.ndarray:
        size = context.size
        picture = np.full((size, size, 3), 255, np.uint8)
        colours = [tuple(int(round(c)) for c in colour) for colour in value]
        if not colours:
            return picture
        edges = np.linspace(0, size, len(colours) + 1).round().astype(int)
        for colour, start, stop in zip(colours, edges[:-1], edges[1:]):
            picture[:, start:stop] = np.clip(colour, 0, 255)
        return picture
