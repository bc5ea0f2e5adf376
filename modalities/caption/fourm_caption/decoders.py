"""Pictures of caption values: the text itself, wrapped on white, so captions sit in the same grid as pictures."""

from __future__ import annotations

import numpy as np

from fourm_core.plugin import RenderContext, text_picture


class CaptionDecoder:
    """Wrapped text in PIL's default font; a caption too long for the tile is scaled down whole, never cut."""

    def render(self, value: str, context: RenderContext) -> np.ndarray:
        return text_picture([str(value)], context.size)
