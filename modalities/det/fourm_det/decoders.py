"""Pictures of det values: every box and its class name drawn over the input picture.

Labels are written inside their box's top-left corner and clipped to the box, so drawing one box never covers
another part of the picture (what is outside every box is the input picture, untouched).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin import RenderContext, base_picture, stable_colour
from fourm_det.serializer import Box

#: Boxes shorter than this (in output pixels) get no label: the text would be cut to nothing.
MIN_LABEL_HEIGHT = 10


def box_pixels(box: Box, size: int) -> tuple[int, int, int, int]:
    """Inclusive pixel rectangle of a box (fractions of the image) in a ``size`` picture."""
    x0 = int(np.floor(box.xmin * size))
    y0 = int(np.floor(box.ymin * size))
    x1 = max(int(np.ceil(box.xmax * size)) - 1, x0)
    y1 = max(int(np.ceil(box.ymax * size)) - 1, y0)
    return min(x0, size - 1), min(y0, size - 1), min(x1, size - 1), min(y1, size - 1)


class DetDecoder:
    """Draws boxes (a stable colour per class) and class names over the input picture (grey without one)."""

    def render(self, value: Sequence[Box | dict[str, Any]], context: RenderContext) -> np.ndarray:
        from PIL import ImageDraw

        picture = base_picture(context)
        boxes = [b if isinstance(b, Box) else Box.model_validate(b) for b in value]
        for box in boxes:
            colour = stable_colour(box.label)
            x0, y0, x1, y1 = box_pixels(box, context.size)
            ImageDraw.Draw(picture).rectangle((x0, y0, x1, y1), outline=colour, width=1)
            if y1 - y0 + 1 >= MIN_LABEL_HEIGHT and x1 - x0 >= 4:
                self._label(picture, box.label, colour, (x0, y0, x1, y1))
        return np.asarray(picture, dtype=np.uint8)

    @staticmethod
    def _label(picture: Any, text: str, colour: tuple[int, int, int], rect: tuple[int, int, int, int]) -> None:
        """The class name on a strip of the box colour, inside the box and clipped to it."""
        from PIL import ImageDraw

        x0, y0, x1, y1 = rect
        inside = picture.crop((x0 + 1, y0 + 1, x1, min(y0 + 12, y1)))
        draw = ImageDraw.Draw(inside)
        width = int(draw.textlength(text)) + 2
        draw.rectangle((0, 0, width, inside.height), fill=colour)
        dark = sum(colour) > 380
        draw.text((1, 0), text, fill=(0, 0, 0) if dark else (255, 255, 255))
        picture.paste(inside, (x0 + 1, y0 + 1))
