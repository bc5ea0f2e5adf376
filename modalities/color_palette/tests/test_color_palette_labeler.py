"""Median-cut palettes."""

from __future__ import annotations

import numpy as np

from fourm_color_palette.labelers import palettes
from fourm_color_palette.serializer import PaletteSerializer


def test_palettes_of_every_size_sorted_by_frequency() -> None:
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:, :6] = (250, 10, 10)
    rgb[:, 6:9] = (10, 250, 10)
    rgb[:, 9:] = (10, 10, 250)
    out = palettes(rgb)
    assert sorted(out) == [str(n) for n in range(1, 8)]
    assert out["3"] == [[250, 10, 10], [10, 250, 10], [10, 10, 250]]
    assert len(out["1"]) == 1 and len(out["7"]) == 3  # only three distinct colours exist
    ser = PaletteSerializer()
    assert ser.serialize(out["3"]) == "v1=3 v0=250 v0=10 v0=10 v0=10 v0=250 v0=10 v0=10 v0=10 v0=250"
