"""The metrics other work reports: COCO box / mask AP through pycocotools (on hand-checkable cases, then on real
item sequences of the synthetic world), MPJPE / PA-MPJPE, and their columns in ``fourm bench quality``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.evaluation.coco import coco_ap, paste_mask
from fourm_core.evaluation.poses import mpjpe, pa_mpjpe, pose_errors
from fourm_core.registry import Registry
from helpers import small_world, tiny_quality_config

PRESET = "tiny"
ITEMS = ["human_poses", "sam_instance"]


# -- COCO AP on hand-checkable cases ---------------------------------------------------------------------------------
def test_truth_against_itself_has_ap_one_for_boxes_and_masks() -> None:
    truth = [[(0.1, 0.1, 0.4, 0.5), (0.5, 0.5, 0.9, 0.8)], [], [(0.0, 0.0, 1.0, 1.0)]]
    assert coco_ap(truth, truth, 100) == {"box_ap": 1.0, "box_ap50": 1.0, "box_ap75": 1.0}
    rng = np.random.default_rng(0)
    crops = [[(rng.random((16, 16)) > 0.3).astype(np.uint8) for _ in boxes] for boxes in truth]
    masks = [[paste_mask(c, b, 100) for c, b in zip(cs, bs, strict=True)] for cs, bs in zip(crops, truth, strict=True)]
    assert masks[0][0].shape == (100, 100) and masks[0][0][:10].sum() == 0 and masks[0][0].sum() > 0
    assert coco_ap(truth, truth, 100, masks, masks, "mask") == {"mask_ap": 1.0, "mask_ap50": 1.0, "mask_ap75": 1.0}


def test_a_shifted_box_scores_what_coco_defines() -> None:
    # a 10 x 10 px box and its copy 2 px to the right: IoU 80 / 120 = 0.667, a hit at IoU 0.50 .. 0.65 (4 of the 10
    # thresholds), a miss from 0.70 on, so AP = 0.4, AP50 = 1, AP75 = 0
    got = coco_ap([[(0.0, 0.0, 0.1, 0.1)]], [[(0.02, 0.0, 0.12, 0.1)]], 100)
    assert got == pytest.approx({"box_ap": 0.4, "box_ap50": 1.0, "box_ap75": 0.0})


def test_constant_scores_trace_the_curve_in_generation_order() -> None:
    # two true boxes, one found exactly and one false positive far away: recall 1/2, precision 1/2 at the end.
    # Found first: precision 1 up to recall 1/2 -> 51 of 101 recall points; found last: precision 1/2 there.
    truth = [[(0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 0.7, 0.7)]]
    hit, miss = (0.0, 0.0, 0.2, 0.2), (0.8, 0.0, 1.0, 0.1)
    first = coco_ap(truth, [[hit, miss]], 100)["box_ap"]
    last = coco_ap(truth, [[miss, hit]], 100)["box_ap"]
    assert first == pytest.approx(51 / 101) and last == pytest.approx(0.5 * 51 / 101)  # the docstring's two bounds


def test_nothing_predicted_is_zero_and_nothing_true_is_absent() -> None:
    assert coco_ap([[(0.1, 0.1, 0.2, 0.2)], []], [[], []], 64) == {"box_ap": 0.0, "box_ap50": 0.0, "box_ap75": 0.0}
    assert coco_ap([[], []], [[(0.1, 0.1, 0.2, 0.2)], []], 64) == {}
    with pytest.raises(ValueError, match="1 predicted images for 2 true ones"):
        coco_ap([[], []], [[]], 64)


# -- pose errors -----------------------------------------------------------------------------------------------------
def test_pa_mpjpe_removes_rotation_scale_and_translation_but_mpjpe_does_not() -> None:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(1)
    true = rng.normal(scale=0.3, size=(3, 24, 3))
    rotations = Rotation.random(3, random_state=2)
    moved = np.stack([1.4 * rotations[i].apply(true[i]) + rng.normal(size=3) for i in range(3)])
    assert pa_mpjpe(true, moved) == pytest.approx(0.0, abs=1e-6) and mpjpe(true, moved) > 100
    # a mirror image is not a rotation: Procrustes with a proper rotation cannot undo it
    assert pa_mpjpe(true, true * np.array([-1.0, 1.0, 1.0])) > 10
    # and noise is measured in mm, not normalised away (scipy.spatial.procrustes would give a unitless disparity)
    noisy = true + rng.normal(scale=0.01, size=true.shape)
    errors = pose_errors(true, noisy)
    assert 5 < errors["pa_mpjpe_mm"] <= errors["mpjpe_mm"] < 25
    with pytest.raises(ValueError, match=r"\(people, joints, 3\)"):
        mpjpe(true[0], true[0])


# -- on real item sequences and in the quality bench -----------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:

    labelled = ["rgb", "caption", "det", *ITEMS]
    return small_world(tmp_path_factory.mktemp("coco"), registry, labelled, ITEMS, steps=3, crops=1)


def test_the_true_strings_have_box_ap_one_and_the_bounds_mask_ap(world: dict, registry: Registry) -> None:
    from fourm_core.data.masking import EOS_ID
    from fourm_core.data.pipeline import open_store_dataset
    from fourm_core.evaluation.items import ItemTruth, item_bound, score_item_ids
    from fourm_core.registry import resolve_ref
    from fourm_core.storage.store import AlignedStore
    from fourm_core.vocab import TextVocabulary

    store = AlignedStore.open(world["store"], mode="r")
    rows = open_store_dataset(world["store"], registry, crop=0)
    vocab = TextVocabulary.load(world["vocab"])
    tokenizer = registry.tokenizer("sam_instance", PRESET, world["toks"])
    serializer = registry.serializer("sam_instance")
    tokens = [(rows[i].get("sam_instance") or {}).get("tokens") for i in range(store.n_samples)]
    indices = [i for i, t in enumerate(tokens) if t is not None and len(t)][:5]
    assert indices
    ids, truth = [], []
    for i in indices:
        text = serializer.serialize(serializer.from_store(rows[i]["sam_instance"], max_points=10**6))
        ids.append(torch.tensor([*vocab.encode(text), EOS_ID]))
        raw = store.read("sam_instance/raw", i)
        items = resolve_ref(tokenizer.config.items)(raw, tokenizer.config.input_size)
        truth.append(ItemTruth([tuple(b) for b in serializer.truth_boxes(raw, store.image_size)], list(items)))
    scores = score_item_ids(ids, truth, serializer, tokenizer, vocab, store.image_size)
    bound = item_bound(truth, tokenizer, None, store.image_size)
    assert scores["box_ap"] == scores["box_ap50"] == 1.0
    assert 0 <= bound["mask_ap"] <= bound["mask_ap50"] <= 1 and scores["mask_ap"] == pytest.approx(bound["mask_ap"])


def test_true_detection_strings_have_box_ap_one(world: dict, registry: Registry) -> None:
    from fourm_core.data.masking import EOS_ID
    from fourm_core.evaluation.boxes import LabelledBoxes, score_box_ids
    from fourm_core.storage.store import AlignedStore
    from fourm_core.vocab import TextVocabulary

    store = AlignedStore.open(world["store"], mode="r")
    vocab = TextVocabulary.load(world["vocab"])
    serializer = registry.serializer("det")
    assert isinstance(serializer, LabelledBoxes)
    values = [store.read("det/raw", i)["boxes"] for i in range(8)]
    truth = [serializer.labelled_boxes(v, store.image_size) for v in values]
    assert sum(map(len, truth)) > 0
    ids = [torch.tensor([*vocab.encode(serializer.serialize(v)), EOS_ID]) for v in values]
    scores = score_box_ids(ids, truth, serializer, vocab, store.image_size)
    assert scores["box_ap50"] == scores["recall"] == scores["precision"] == scores["parse_rate"] == 1.0
    # the string writes corners in 1/999 steps: a box a pixel or two wide can lose IoU >= 0.95 with its stored self
    assert 0.95 < scores["box_ap"] <= 1.0
    # the same boxes under another class name match nothing: AP is per class
    relabelled = [[(b, "not a class") for b, _ in t] for t in truth]
    worse = score_box_ids(ids, relabelled, serializer, vocab, store.image_size)
    assert worse["box_ap"] == worse["recall"] == 0.0 and worse["parse_rate"] == 1.0


def test_quality_bench_shows_ap_and_pose_error_columns(world: dict, registry: Registry, tmp_path: Path) -> None:
    from fourm_core.apps.bench.quality import run_quality_bench

    config = tiny_quality_config(
        world,
        tmp_path / "runs",
        tasks={"sam_instance": ["precision", "iou"], "human_poses": ["recall", "mpjpe_mm"], "det": ["recall"]},
        rows=[{"name": "all", "modalities": ["rgb", "det", *ITEMS]}],
        evaluation={"batch_size": 6},
        prompted={"row": "all"},
    )
    result = run_quality_bench(config, registry, log=lambda line: None)
    header, *_, bound = result["markdown"].split("\n\n")[0].strip().splitlines()
    for column in ("sam_instance box_ap", "sam_instance mask_ap", "human_poses box_ap", "human_poses pa_mpjpe_mm"):
        assert f" {column} |" in header
    assert header.endswith("| det recall | det box_ap | det box_ap50 |")
    assert header.startswith("| model | sam_instance precision | sam_instance iou | sam_instance box_ap |")
    cells = dict(zip(*([c.strip() for c in line.strip("|").split("|")][1:] for line in (header, bound)), strict=True))
    assert float(cells["human_poses pa_mpjpe_mm"]) >= 0 and float(cells["sam_instance mask_ap"]) <= 1  # bound row
    assert float(cells["det recall"]) == float(cells["det box_ap50"]) == 1.0  # det's bound: its own format
    scores = result["rows"]["all"]
    # the held-out scenes have people, instances and things, so every target reports AP
    assert all(0 <= scores[t]["model"]["box_ap"] <= 1 for t in [*ITEMS, "det"])
    # a model cell left empty ("-": nothing matched, so no matched-pair metric) is explained under the table
    empty = [k for k in ("iou",) if k not in scores["sam_instance"]["model"]]
    assert not empty or any(n.startswith("- all / sam_instance iou") for n in result["notes"])
    # the box-prompted row: SAM mask AP with the true boxes given, poses scored per given person; det has no prompts
    prompted = result["rows"]["all, box-prompted"]
    assert set(prompted) == set(ITEMS) and 0 <= prompted["sam_instance"]["model"]["mask_ap"] <= 1
    assert prompted["sam_instance"]["model"]["decoded_rate"] == 1.0 and "mpjpe_mm" in prompted["human_poses"]["model"]
    assert "| all, box-prompted |" in result["markdown"]
    assert any(n.startswith("- all, box-prompted / sam_instance precision") for n in result["notes"])
    assert all(note in result["markdown"] for note in result["notes"])
