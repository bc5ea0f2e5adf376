"""Held-out evaluation (the shape of the paper's Table 1): per target the model's metrics beside the tokenizer
bound, kNN against scene labels for global embeddings, ensembling, and the errors for what cannot be evaluated.

A random-init tiny FourM on a small labelled synthetic store with briefly trained tokenizers: the tests check what
is measured and how, not how good an untrained model is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fourm_core.evaluation import EvalConfig, evaluate, label_knn, scores_markdown
from fourm_core.registry import Registry
from fourm_core.storage.store import AlignedStore
from helpers import random_model_api, small_world, tiny_quality_config

PRESET = "tiny"
MODALITIES = ["rgb", "depth", "semseg", "dinov2_global", "caption"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    labelled = ["rgb", "depth", "semseg", "dinov2", "dinov2_global", "caption"]
    tokenised = ["depth", "semseg", "dinov2_global"]
    built = small_world(tmp_path_factory.mktemp("evaluation"), registry, labelled, tokenised, steps=3, crops=1)
    return {**built, "model": random_model_api(registry, built, MODALITIES, PRESET)}


def test_every_tokenised_target_is_scored_beside_its_bound(world: dict) -> None:
    scores = evaluate(world["model"], world["store"], EvalConfig(samples=8, bank=32, batch_size=4))
    assert set(scores) == {"depth", "semseg", "dinov2_global"}  # caption is a sequence; rgb is the input
    depth = scores["depth"]
    assert depth.n == 8 and set(depth.model) == {"abs_rel", "delta1"} and set(depth.bound) == {"abs_rel", "delta1"}
    assert all(np.isfinite(v) for v in depth.model.values())
    assert 0 <= scores["semseg"].model["miou"] <= 1
    knn = scores["dinov2_global"]
    assert {"cosine", "knn_label_top1", "knn_label_top5"} <= set(knn.model) and knn.model[
        "knn_label_top5"
    ] >= knn.model["knn_label_top1"]
    table = scores_markdown({"tiny": scores})
    assert "| tiny |" in table and "| tokenizer bound |" in table and "depth abs_rel" in table


def test_ensemble_fuses_draws_and_targets_can_be_named(world: dict) -> None:
    one = evaluate(
        world["model"],
        world["store"],
        EvalConfig(samples=4, targets=["depth"], label_field=None, temperature=1.0, steps=2),
    )
    five = evaluate(
        world["model"],
        world["store"],
        EvalConfig(samples=4, targets=["depth"], label_field=None, temperature=1.0, steps=2, ensemble=5),
    )
    assert list(one) == ["depth"] and one["depth"].bound == five["depth"].bound  # the bound does not sample
    assert one["depth"].model != five["depth"].model


def test_what_cannot_be_evaluated_is_named(world: dict) -> None:
    with pytest.raises(ValueError, match="caption: cannot be evaluated"):
        evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=["caption"]))
    with pytest.raises(ValueError, match="normal: cannot be evaluated"):
        evaluate(world["model"], world["store"], EvalConfig(samples=4, targets=["normal"]))
    n = AlignedStore.open(world["store"], mode="r").n_samples
    with pytest.raises(ValueError, match="keep some to train"):
        evaluate(world["model"], world["store"], EvalConfig(samples=n))


def test_label_knn() -> None:
    bank = np.array([[1, 0], [0, 1], [0.9, 0.1], [-1, 0]], np.float32)
    labels = ["a", "b", "a", "c"]
    queries = np.array([[1, 0.05], [0, 1], [-1, 0.1]], np.float32)
    got = label_knn(bank, labels, queries, ["a", "a", "d"])
    assert got["knn_label_top1"] == pytest.approx(1 / 3)  # only the first query's nearest is labelled like it
    assert got["knn_label_top5"] == pytest.approx(2 / 3)  # all 4 are within the top 5; no bank sample is "d"


def test_quality_bench_trains_each_row_once_and_tabulates(world: dict, tmp_path: Path) -> None:
    from fourm_core.apps.bench.quality import run_quality_bench

    config = tiny_quality_config(
        world,
        tmp_path / "runs",
        tasks={"depth": ["abs_rel"], "dinov2_global": ["knn_label_top1"]},
        rows=[
            {"name": "all"},
            {"name": "no globals", "modalities": ["rgb", "depth", "caption"]},
            {"name": "specialists", "specialists": ["depth"]},
        ],
        evaluation={"bank": 16},
        ensemble={"row": "all", "n": 2},
    )
    lines: list[str] = []
    result = run_quality_bench(config, world["model"].registry, log=lines.append)
    rows = result["rows"]
    assert list(rows) == ["all", "no globals", "specialists", "all, ensemble of 2"]
    assert set(rows["all"]) == {"depth", "dinov2_global"} and set(rows["no globals"]) == {"depth"}
    assert set(rows["specialists"]) == {"depth"} and rows["specialists"]["depth"]["n"] == 6
    mixture = json.loads((tmp_path / "runs" / "specialists" / "depth" / "mixture.json").read_text())
    assert {k: v["target_alphas"] for k, v in mixture.items()} == {"rgb@64": [0.0], "tok_depth@64": [1.0]}
    table = result["markdown"].splitlines()
    assert table[0] == "| model | depth abs_rel | dinov2_global knn_label_top1 |"
    assert table[3].startswith("| no globals | ") and table[3].endswith(" | - |")  # trained without the task
    assert table[-1].startswith("| tokenizer bound |")
    # a second call reuses the three finished runs instead of training again
    again: list[str] = []
    run_quality_bench(config, world["model"].registry, log=again.append)
    assert sum("reusing" in line for line in again) == 3 and not any("reusing" in line for line in lines)
