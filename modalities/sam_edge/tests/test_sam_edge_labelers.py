"""Instance-map boundaries."""

from __future__ import annotations

import numpy as np

from fourm_sam_edge.labelers import instance_boundaries


def test_boundaries_mark_both_sides_of_every_id_change() -> None:
    m = np.zeros((5, 5), np.int32)
    m[1:4, 1:4] = 2
    edges = instance_boundaries(m) > 0
    assert not edges[2, 2]  # interior of the instance
    assert edges[1, 1] and edges[0, 1] and edges[1, 0]  # both sides of the boundary
    assert not edges[4, 4]  # background far from the instance
    assert instance_boundaries(np.ones((4, 4), np.int32)).max() == 0
