"""Held-out evaluation of item-tokenised sequences (3D poses, SAM instances): the ItemMatching protocol of both
serializers on real labelled scenes, greedy box matching, an oracle whose "generations" are the true strings (it
must score recall = precision = 1 and exactly the tokenizer bound), and a run of a random-init tiny model.

The tests check what is measured and how, not how good an untrained model is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fourm_core.data.masking import EOS_ID
from fourm_core.data.pipeline import open_store_dataset
from fourm_core.evaluation import EvalConfig, evaluate
from fourm_core.evaluation.items import (
    ItemTruth,
    box_iou,
    item_bound,
    match_boxes,
    score_item_ids,
    sequence_text,
)
from fourm_core.registry import Registry, resolve_ref
from fourm_core.serialization import ItemMatching
from fourm_core.storage.store import AlignedStore
from helpers import random_model_api, small_world

PRESET = "tiny"
ITEMS = ["human_poses", "sam_instance"]
MODALITIES = ["rgb", *ITEMS]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    labelled = ["rgb", "caption", *ITEMS]
    built = small_world(tmp_path_factory.mktemp("evaluation_items"), registry, labelled, ITEMS, steps=3, crops=1)
    model = random_model_api(registry, built, MODALITIES, PRESET)
    store = AlignedStore.open(built["store"], mode="r")
    rows = open_store_dataset(built["store"], registry, crop=0)
    return {
        **built,
        "model": model,
        "vocab_obj": model.vocabulary,
        "image_size": store.image_size,
        "n": store.n_samples,
        "rows": rows,
    }


def _with_items(world: dict, name: str) -> list[int]:
    """Samples whose stored row of ``name`` holds at least one tokenised item."""
    out = []
    for i in range(world["n"]):
        tokens = (world["rows"][i].get(name) or {}).get("tokens")
        if tokens is not None and len(tokens):
            out.append(i)
    return out


@pytest.mark.parametrize("name", ITEMS)
def test_item_boxes_of_the_parsed_string_are_the_truth_boxes(world: dict, registry: Registry, name: str) -> None:
    serializer = registry.serializer(name)
    assert isinstance(serializer, ItemMatching)
    indices = _with_items(world, name)
    assert indices, f"no labelled scene has {name} items"
    size = world["image_size"]
    for index in indices[:6]:
        row = world["rows"][index][name]
        full = {"max_points": 10**6} if name == "sam_instance" else {}  # every instance, not the first five
        value = serializer.parse(serializer.serialize(serializer.from_store(row, **full)))
        found = serializer.item_boxes(value, size)
        truth = serializer.truth_boxes(row, size)
        assert len(found) == len(truth) == len(row["tokens"])
        np.testing.assert_allclose([b for b, _ in found], truth, atol=1 / 999)  # value-token quantisation
        np.testing.assert_array_equal(np.stack([c for _, c in found]), np.asarray(row["tokens"]))


def test_sam_instances_found_by_several_points_are_listed_once(registry: Registry) -> None:
    from fourm_sam_instance.serializer import Instance, QueryPoint

    a, b = Instance(bbox=(0, 0, 9, 9), tokens=tuple(range(16))), Instance(bbox=(10, 0, 19, 9), tokens=(1,) * 16)
    points = [QueryPoint(x=1, y=1, instances=(a,)), QueryPoint(x=12, y=2, instances=(b, a)), QueryPoint(x=30, y=30)]
    boxes = registry.serializer("sam_instance").item_boxes(points, 20)
    assert [box for box, _ in boxes] == [(0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5)]


def test_greedy_matching_by_box_iou() -> None:
    assert box_iou((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0 and box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((0, 0, 2, 1), (1, 0, 3, 1)) == pytest.approx(1 / 3)
    truth = [(0.0, 0.0, 0.4, 0.4), (0.5, 0.5, 1.0, 1.0), (0.0, 0.6, 0.2, 0.8)]
    predicted = [
        (0.55, 0.5, 1.0, 1.0),  # truth 1, IoU 0.9
        (0.0, 0.0, 0.38, 0.4),  # truth 0, IoU 0.95
        (0.0, 0.0, 0.4, 0.35),  # truth 0 too (IoU 0.875), but it is taken: unmatched
        (0.6, 0.0, 0.9, 0.2),  # nothing
    ]
    assert match_boxes(predicted, truth) == [(1, 0), (0, 1)]
    assert match_boxes(predicted, truth, iou=0.92) == [(1, 0)]
    assert match_boxes([], truth) == [] and match_boxes(predicted, []) == []


def _true_ids(world: dict, registry: Registry, name: str, index: int) -> torch.Tensor:
    serializer = registry.serializer(name)
    full = {"max_points": 10**6} if name == "sam_instance" else {}
    text = serializer.serialize(serializer.from_store(world["rows"][index][name], **full))
    return torch.tensor([*world["vocab_obj"].encode(text), EOS_ID])


def _truth(world: dict, registry: Registry, name: str, index: int, tokenizer) -> ItemTruth:
    row = AlignedStore.open(world["store"], mode="r").read(f"{name}/raw", index)
    items = resolve_ref(tokenizer.config.items)(row, tokenizer.config.input_size)
    return ItemTruth([tuple(b) for b in registry.serializer(name).truth_boxes(row, world["image_size"])], list(items))


@pytest.mark.parametrize("name", ITEMS)
def test_the_true_strings_score_perfect_recall_and_the_tokenizer_bound(
    world: dict, registry: Registry, name: str
) -> None:
    tokenizer = registry.tokenizer(name, PRESET, world["toks"])
    evaluator = resolve_ref(tokenizer.config.evaluator) if tokenizer.config.evaluator else None
    indices = _with_items(world, name)[:6] + [i for i in range(world["n"]) if i not in _with_items(world, name)][:2]
    ids = [_true_ids(world, registry, name, i) for i in indices]
    truth = [_truth(world, registry, name, i, tokenizer) for i in indices]
    assert sequence_text(torch.cat([ids[0], torch.zeros(3, dtype=torch.long)]), world["vocab_obj"])  # padding
    scores = score_item_ids(
        ids, truth, registry.serializer(name), tokenizer, world["vocab_obj"], world["image_size"], evaluator
    )
    bound = item_bound(truth, tokenizer, evaluator)
    n_items = sum(len(t.items) for t in truth)
    assert scores["recall"] == scores["precision"] == scores["parse_rate"] == 1.0 and scores["matched"] == n_items
    metrics = {k: v for k, v in scores.items() if k not in ("recall", "precision", "parse_rate", "matched")}
    metrics = {k: v for k, v in metrics.items() if "_ap" not in k}  # COCO AP: tests/test_coco_metrics.py
    assert metrics.keys() == bound.keys() and metrics == pytest.approx(bound)
    expected = {"human_poses": {"mae", "mpjpe_mm", "pa_mpjpe_mm"}, "sam_instance": {"iou"}}[name]
    assert set(bound) == expected

    # a garbled generation parses to nothing: counted, its items missed
    garbled = [torch.tensor([*world["vocab_obj"].encode("point point"), EOS_ID])] + ids[1:]
    worse = score_item_ids(
        garbled, truth, registry.serializer(name), tokenizer, world["vocab_obj"], world["image_size"], evaluator
    )
    assert worse["parse_rate"] == pytest.approx((len(ids) - 1) / len(ids))
    assert worse["recall"] == pytest.approx((n_items - len(truth[0].items)) / n_items) and worse["precision"] == 1.0


def test_random_model_is_evaluated_with_finite_scores(world: dict) -> None:
    progress: list[tuple] = []
    scores = evaluate(
        world["model"], world["store"], EvalConfig(samples=4, batch_size=4), progress=lambda *a: progress.append(a)
    )
    assert set(scores) == set(ITEMS)
    for task in scores.values():
        assert task.n == 4 and {"recall", "precision", "parse_rate", "matched"} <= set(task.model)
        assert 0 <= task.model["parse_rate"] <= 1 and 0 <= task.model["recall"] <= 1
        assert all(np.isfinite(v) for v in [*task.model.values(), *task.bound.values()])
        assert "recall" not in task.bound
    assert (ITEMS[0], 4, 4) in progress
    with pytest.raises(ValueError, match="rgb: cannot be evaluated"):
        evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=["rgb"]))


def test_an_oracle_generator_scores_the_bound_end_to_end(
    world: dict, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fourm_core.evaluation.common as module

    held_out = list(range(world["n"] - 4, world["n"]))

    def oracle(model, key, modality, contents, config, progress, grammar):  # noqa: ANN001, ARG001 (the sampler's stand-in)
        assert len(contents) == len(held_out)
        ids = [_true_ids(world, registry, modality, i) for i in held_out]
        return ids, [torch.zeros(len(row)) for row in ids]  # every id certain

    monkeypatch.setattr(module, "generated_rows", oracle)
    scores = evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=ITEMS))
    for task in scores.values():
        assert task.model["recall"] == task.model["precision"] == task.model["parse_rate"] == 1.0
        assert {k: task.model[k] for k in task.bound} == pytest.approx(task.bound)


def test_one_evaluate_routes_item_targets_and_skips_them_when_ensembling(world: dict) -> None:
    scores = evaluate(world["model"], str(world["store"]), EvalConfig(samples=4, targets=list(ITEMS)))
    assert list(scores) == list(ITEMS) and all("parse_rate" in s.model for s in scores.values())
    with pytest.raises(ValueError, match=f"{ITEMS[0]}: cannot be evaluated: item sequences have no per-sample fusion"):
        evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=list(ITEMS), ensemble=2))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=list(ITEMS), ensemble=2, strict=False))
