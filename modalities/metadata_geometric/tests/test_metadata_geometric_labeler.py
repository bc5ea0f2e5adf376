"""Geometric complexity and occlusion score."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_metadata_geometric.labelers import geometric_complexity, occlusion_score


def test_one_plane_is_simple_and_a_box_corner_is_complex() -> None:
    flat = np.zeros((8, 8, 3), np.float32)
    flat[..., 1] = -1
    assert geometric_complexity(flat) == pytest.approx(0.0)
    corner = np.zeros((9, 9, 3), np.float32)
    corner[:3, :, 0], corner[3:6, :, 1], corner[6:, :, 2] = 1, 1, 1
    assert geometric_complexity(corner) > 0.4


def test_depth_jumps_are_occlusion_edges_and_smooth_slopes_are_not() -> None:
    slope = np.tile(np.linspace(2, 3, 32, dtype=np.float32), (32, 1))
    assert occlusion_score(slope) == 0
    step = np.full((32, 32), 10, np.float32)
    step[:, :16] = 2
    assert 0 < occlusion_score(step) < 0.25
