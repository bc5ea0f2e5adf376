"""Instance labelers: contiguous ids and pixel boxes; classical segments on a real photo-like image."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_core.plugin import SampleView
from fourm_sam_instance.labelers import Felzenszwalb, instances_and_boxes


def test_ids_become_contiguous_and_boxes_are_inclusive_pixel_extents() -> None:
    m = np.zeros((6, 8), np.int32)
    m[1:3, 2:5] = 7
    m[4, 6] = 3
    out = instances_and_boxes(m)
    assert sorted(np.unique(out["instances"]).tolist()) == [0, 1, 2]
    assert out["boxes"].tolist() == [[6, 4, 6, 4], [2, 1, 4, 2]]  # id 3 -> 1, id 7 -> 2
    assert out["instances"].dtype == np.int32 and out["boxes"].dtype == np.int32


def test_an_empty_map_gives_no_boxes() -> None:
    out = instances_and_boxes(np.zeros((4, 4), np.int32))
    assert out["boxes"].shape == (0, 4)


def test_felzenszwalb_separates_two_flat_regions() -> None:
    pytest.importorskip("skimage")
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, 16:] = (200, 30, 30)
    out = Felzenszwalb(32).label(SampleView(0, {}, {"rgb": {"rgb": rgb}}))
    ids, counts = np.unique(out["instances"], return_counts=True)
    assert out["instances"][0, 0] != out["instances"][0, 31]
    assert np.sort(counts)[-2:].sum() >= 0.8 * 32 * 32  # two big regions (thin strips may form at the seam)
    assert len(out["boxes"]) == len(ids)
