"""The SAM teacher's post-processing on hand-made mask logits: predicted-IoU and stability filters, duplicate
removal, and the flattening of overlapping masks into the store's instance map (largest first, parts on top)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from fourm_core.plugin import LabelContext  # noqa: E402
from fourm_sam_instance.plugin import SAM_INSTANCE, SAM_VIT_H  # noqa: E402
from fourm_sam_instance.teachers import SamGridInstances, paint_instances  # noqa: E402
from fourm_sam_instance.tokenizing import mask_items  # noqa: E402


def test_smaller_masks_stay_on_top_and_ids_follow_painting_order() -> None:
    big = np.zeros((8, 8), bool)
    big[:6, :6] = True
    small = np.zeros((8, 8), bool)
    small[1:3, 1:3] = True
    hidden = np.zeros((8, 8), bool)
    hidden[4, 4] = True  # inside big, smaller than it: painted after it, so it survives
    out = paint_instances([small, big, hidden], (8, 8))
    assert out["instances"].dtype == np.int32 and out["boxes"].dtype == np.int32
    assert out["instances"][0, 0] == 1 and out["instances"][1, 1] == 2 and out["instances"][4, 4] == 3
    assert out["instances"][7, 7] == 0  # no mask: 0 = none
    assert out["boxes"].tolist() == [[0, 0, 5, 5], [1, 1, 2, 2], [4, 4, 4, 4]]
    assert mask_items(out, 4).shape == (3, 4, 4)  # every instance has pixels inside its box


def test_instances_left_with_too_few_visible_pixels_are_dropped() -> None:
    big = np.ones((6, 6), bool)
    speck = np.zeros((6, 6), bool)
    speck[0, 0] = True
    out = paint_instances([big, speck], (6, 6), min_pixels=2)
    assert sorted(np.unique(out["instances"]).tolist()) == [1] and out["boxes"].tolist() == [[0, 0, 5, 5]]
    empty = paint_instances([], (4, 5))
    assert empty["instances"].shape == (4, 5) and not empty["instances"].any() and empty["boxes"].shape == (0, 4)


@pytest.fixture
def teacher(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SamGridInstances:
    """The SAM labeler with its random-init stand-in (offline, empty cache, random teachers allowed)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    context = LabelContext("tiny", 32, ("rgb",), {"allow_random_teachers": True, "device": "cpu"})
    out = SamGridInstances(SAM_INSTANCE.spec, context, SAM_VIT_H.model_dump(), points_per_side=2)
    assert out.network is not None and out.random_init  # builds the processor too
    return out


def _logits(*squares: tuple[int, int, float]) -> torch.Tensor:
    """(1, len, 16, 16) low-resolution logits: +-value inside / outside square (start, stop) of side 16."""
    out = torch.empty(1, len(squares), 16, 16)
    for k, (start, stop, value) in enumerate(squares):
        out[0, k] = -value
        out[0, k, start:stop, start:stop] = value
    return out


def test_filters_and_duplicate_removal_follow_sams_mask_generator(teacher: SamGridInstances) -> None:
    # point 1: a big stable mask, its duplicate (lower score), an unstable mask (logits inside (-1, 1))
    # point 2: a small stable mask inside the big one, a low-IoU mask, the small mask again
    first = teacher._filter(_logits((0, 12, 20), (0, 12, 20), (0, 16, 0.5)), torch.tensor([[0.99, 0.97, 0.99]]), 32, 32)
    second = teacher._filter(_logits((2, 5, 20), (8, 16, 20), (2, 5, 20)), torch.tensor([[0.95, 0.1, 0.9]]), 32, 32)
    assert len(first[0]) == 2 and len(second[0]) == 2  # unstable and low-IoU masks are filtered out
    out = teacher._instances([first, second], (32, 32))
    assert out["instances"].shape == (32, 32) and out["instances"].dtype == np.int32
    assert out["boxes"].tolist() == [[0, 0, 23, 23], [4, 4, 9, 9]]  # duplicates removed; the part on top of the whole
    assert (out["instances"][4:10, 4:10] == 2).all() and out["instances"][0, 0] == 1 and out["instances"][31, 31] == 0


def test_the_grid_is_sams_32_by_32_at_the_model_side(teacher: SamGridInstances) -> None:
    teacher.settings = teacher.settings.model_copy(update={"points_per_side": 32})
    teacher._grid = None
    grid = teacher.grid()
    assert grid.shape == (1024, 2)
    assert grid[0].tolist() == [16.0, 16.0] and grid[-1].tolist() == [1008.0, 1008.0]  # cell centres of 1024 px


def test_only_masks_passing_the_predicted_iou_are_resized_and_slicing_changes_nothing(
    teacher: SamGridInstances, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fourm_sam_instance.teachers as teachers

    logits = _logits((0, 12, 20), (2, 5, 20), (0, 16, 0.5), (8, 16, 20))
    scores = torch.tensor([[0.99, 0.5, 0.95, 0.9]])  # the second fails the predicted IoU (0.88), the third stability
    whole = teacher._filter(logits, scores, 32, 32)
    resized: list[int] = []
    interpolate = teachers.F.interpolate

    def spy(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        resized.append(len(x))
        return interpolate(x, *args, **kwargs)

    monkeypatch.setattr(teachers.F, "interpolate", spy)
    monkeypatch.setattr(teachers, "PIXELS_PER_PASS", 32 * 32)  # one mask per pass
    sliced = teacher._filter(logits, scores, 32, 32)
    assert resized == [1, 1, 1]  # the low-IoU mask is never resized
    assert [r["counts"] for r in sliced[0]] == [r["counts"] for r in whole[0]] and len(whole[0]) == 2
    assert torch.equal(sliced[1], whole[1]) and torch.equal(sliced[2], whole[2])
    assert whole[1].tolist() == pytest.approx([0.99, 0.9]) and whole[2].dtype == torch.long
    none = teacher._filter(logits, torch.zeros(1, 4), 32, 32)  # nothing passes: empty, and NMS copes
    assert none[0] == [] and none[2].shape == (0, 4)
    assert teacher._instances([none], (32, 32))["boxes"].shape == (0, 4)
