"""Canny edges of the RGB image."""

from __future__ import annotations

import numpy as np

from fourm_canny_edge.labelers import Canny
from fourm_core.plugin import SampleView


def test_a_bright_square_gives_a_closed_edge_ring_and_flat_images_none() -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[8:24, 8:24] = 220
    edges = Canny().label(SampleView(0, {}, {"rgb": {"rgb": rgb}}))["edges"]
    assert edges.dtype == np.uint8 and set(np.unique(edges)) <= {0, 255}
    assert edges[16, 16] == 0 and edges[2, 2] == 0
    assert edges[6:10, 16].max() == 255 and edges[16, 6:10].max() == 255
    flat = Canny().label(SampleView(0, {}, {"rgb": {"rgb": np.full((16, 16, 3), 90, np.uint8)}}))["edges"]
    assert flat.max() == 0
