"""Image statistics for the metadata_image labeler."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_metadata_image.labelers import colorfulness, image_statistics


def test_grey_images_have_zero_colourfulness_and_saturation() -> None:
    grey = np.full((8, 8, 3), 128, np.uint8)
    stats = image_statistics(grey, (640, 480))
    assert stats["colorfulness"] == 0 and stats["saturation"] == 0
    assert stats["brightness"] == pytest.approx(128) and stats["contrast"] == 0 and stats["entropy"] == 0
    assert (stats["original_width"], stats["original_height"]) == (640, 480)


def test_entropy_of_a_two_level_image_is_one_bit_and_colour_raises_colourfulness() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4] = 255
    assert image_statistics(rgb, None)["entropy"] == pytest.approx(1.0)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    assert colorfulness(red) > 50
