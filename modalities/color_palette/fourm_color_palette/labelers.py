"""Colour palettes of 1..7 colours by median cut (Pillow's quantizer), most frequent colour first."""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView


def palettes(rgb: np.ndarray, max_colours: int = 7) -> dict[str, list[list[int]]]:
    """``{"1": [[r, g, b]], ..., "7": [...]}``: for each size, the median-cut palette sorted by pixel count.

    Pillow's MEDIANCUT is used instead of a hand-written k-means: deterministic, fast and maintained. Images with
    fewer distinct colours than n give fewer entries (the format allows 1..n).
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    out = {}
    for n in range(1, max_colours + 1):
        quantized = image.quantize(colors=n, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        counts = np.bincount(np.asarray(quantized).ravel(), minlength=n)
        colours = np.asarray(quantized.getpalette()[: 3 * len(counts)], dtype=int).reshape(-1, 3)
        order = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:n]
        out[str(n)] = [colours[i].tolist() for i in order]
    return out


class MedianCut:
    """Palettes of every size 1..7 from the rgb modality."""

    version = "1"

    def label(self, sample: SampleView) -> dict[str, Any]:
        return {"palettes": palettes(np.asarray(sample.get("rgb")["rgb"]))}

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "PIL median cut, sizes 1..7"}


def median_cut_labeler(spec: ModalitySpec, context: LabelContext) -> MedianCut:
    """Median-cut palettes."""
    return MedianCut()
