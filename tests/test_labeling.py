"""The labeling runner: dependency order, skipping with reasons, per-sample failures, resume, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fourm_core.labeling.runner import label_store, plan_labeling, raw_part
from fourm_core.registry import Registry
from fourm_core.spec import ArraySpec
from fourm_core.storage.store import DONE, FAILED, AlignedStore
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS

SOURCE = (
    ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
    ArraySpec(name="depth", dtype="float32", shape=("H", "W")),
    ArraySpec(name="boxes", dtype="json", ragged=True),
    ArraySpec(name="caption", dtype="text", ragged=True),
)


def source_row(i: int, size: int = 16) -> dict:
    rng = np.random.default_rng(i)
    return {
        "rgb": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "depth": rng.random((size, size), dtype=np.float32) + 1,
        "boxes": [{"xmin": 0.1, "ymin": 0.2, "xmax": 0.5, "ymax": 0.6, "label": "cup", "score": 1.0}],
        "caption": "" if i == 5 else f"a cup number {i}",
    }


@pytest.fixture
def store(tmp_path: Path) -> AlignedStore:
    s = AlignedStore.create(tmp_path / "s.zarr", n_samples=20, image_size=16, preset="tiny", block_size=8)
    s.ensure("source", SOURCE)
    s.root.attrs["source"] = {"name": "test", "fields": [a.name for a in SOURCE]}
    for block in range(s.n_blocks):
        s.write_block("source", block, [source_row(i) for i in s.block_range(block)])
    return s


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


def test_plan_skips_what_the_source_cannot_support_and_says_why(store: AlignedStore, registry: Registry) -> None:
    plans = {p.name: p for p in plan_labeling(store, registry)}
    assert plans["depth"].labeler == "source" and plans["caption"].labeler == "source"
    assert "the source has no 'normal'" in plans["normal"].skip_reason
    assert "no raw arrays" in plans["tok_rgb"].skip_reason


def test_labels_are_copied_and_bad_samples_fail_alone(store: AlignedStore, registry: Registry) -> None:
    plans = label_store(store.path, registry=registry, only=["rgb", "depth", "det", "caption"], options=RANDOM_TEACHERS)
    by_name = {p.name: p for p in plans}
    assert by_name["depth"].done == 20 and by_name["caption"].done == 19 and by_name["caption"].failed == 1
    again = AlignedStore.open(store.path)
    np.testing.assert_array_equal(again.read(raw_part("depth"), 3)["depth"], source_row(3)["depth"])
    assert again.read(raw_part("det"), 7)["boxes"][0]["label"] == "cup"
    assert again.state(raw_part("caption"))[5] == FAILED
    assert "the source's 'caption' is empty" in again.errors(raw_part("caption"))[5]
    assert again.provenance(raw_part("depth"))["labeler"] == "source"


def test_a_rerun_only_does_what_is_left(store: AlignedStore, registry: Registry) -> None:
    label_store(store.path, registry=registry, only=["depth"], options=RANDOM_TEACHERS)
    plans = label_store(store.path, registry=registry, only=["depth"], options=RANDOM_TEACHERS)
    assert plans[0].blocks_todo == 0 and plans[0].done == 0


def test_worker_processes_give_the_same_result(store: AlignedStore, registry: Registry, tmp_path: Path) -> None:
    label_store(store.path, registry=registry, only=["rgb", "depth"], workers=2, options=RANDOM_TEACHERS)
    state = AlignedStore.open(store.path).state(raw_part("depth"))
    assert (state == DONE).all()
    np.testing.assert_array_equal(AlignedStore.open(store.path).read(raw_part("rgb"), 19)["rgb"], source_row(19)["rgb"])
