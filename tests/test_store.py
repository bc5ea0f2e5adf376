"""The aligned Zarr store: block writes, ragged values + offsets, states, resume safety, manifests, verify."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from fourm_core.spec import ArraySpec
from fourm_core.storage.store import DONE, FAILED, PENDING, AlignedStore, StoreError, StoreMismatchError

ARRAYS = (
    ArraySpec(name="depth", dtype="float32", shape=("H", "W")),
    ArraySpec(name="feat", dtype="float16", shape=("C",)),
    ArraySpec(name="boxes", dtype="int32", shape=("N", 4), ragged=True),
    ArraySpec(name="meta", dtype="json", ragged=True),
    ArraySpec(name="caption", dtype="text", ragged=True),
)


def sample(i: int, size: int = 8) -> dict:
    rng = np.random.default_rng(i)
    return {
        "depth": rng.random((size, size), dtype=np.float32),
        "feat": rng.random(3).astype(np.float16),
        "boxes": rng.integers(0, 64, (i % 4, 4)).astype(np.int32),
        "meta": {"i": i, "tags": ["a"] * (i % 3)},
        "caption": f"sample {i} ü",
    }


@pytest.fixture
def store(tmp_path: Path) -> AlignedStore:
    s = AlignedStore.create(tmp_path / "s.zarr", n_samples=21, image_size=8, preset="tiny", block_size=8)
    s.ensure("thing/raw", ARRAYS, dims={"C": 3}, provenance={"labeler": "test", "config_hash": "abc"})
    return s


def _write_all(store: AlignedStore) -> None:
    for block in range(store.n_blocks):
        store.write_block("thing/raw", block, [sample(i) for i in store.block_range(block)])


def test_round_trip_of_every_kind_of_array(store: AlignedStore) -> None:
    _write_all(store)
    again = AlignedStore.open(store.path)
    for i in (0, 7, 8, 20):
        got, want = again.read("thing/raw", i), sample(i)
        np.testing.assert_array_equal(got["depth"], want["depth"])
        np.testing.assert_array_equal(got["feat"], want["feat"])
        np.testing.assert_array_equal(got["boxes"], want["boxes"])
        assert got["boxes"].shape == (i % 4, 4)
        assert got["meta"] == want["meta"] and got["caption"] == want["caption"]
    rows = again.read_block("thing/raw", 2)
    assert len(rows) == 5 and rows[4]["meta"]["i"] == 20
    assert again.todo_blocks("thing/raw") == [] and again.verify() == []


def test_a_bad_sample_fails_alone_with_a_message(store: AlignedStore) -> None:
    values = [sample(i) for i in store.block_range(0)]
    values[3]["depth"] = np.zeros((4, 4), np.float32)
    values[5] = None
    store.write_block("thing/raw", 0, values, errors={5: "corrupt input"})
    state = store.state("thing/raw")[:8]
    assert state.tolist() == [DONE, DONE, DONE, FAILED, DONE, FAILED, DONE, DONE]
    errors = store.errors("thing/raw")
    assert "sample 3 of 'thing/raw', array 'depth': expected shape (8, 8), got (4, 4)" in errors[3]
    assert errors[5] == "corrupt input"
    with pytest.raises(StoreError, match="corrupt input"):
        store.read("thing/raw", 5)
    np.testing.assert_array_equal(store.read("thing/raw", 4)["depth"], sample(4)["depth"])


def test_unwritten_blocks_are_todo_and_reported(store: AlignedStore) -> None:
    store.write_block("thing/raw", 1, [sample(i) for i in store.block_range(1)])
    assert store.todo_blocks("thing/raw") == [0, 2]
    assert (store.state("thing/raw")[:8] == PENDING).all()
    problems = store.verify()
    assert problems == ["thing/raw: 13 samples not written (first: [0, 1, 2, 3, 4])"]
    with pytest.raises(StoreError, match="not written yet"):
        store.read("thing/raw", 0)


def test_rewriting_a_block_is_idempotent(store: AlignedStore) -> None:
    _write_all(store)
    before = {i: store.read("thing/raw", i) for i in range(21)}
    store.write_block("thing/raw", 1, [sample(i) for i in store.block_range(1)])
    for i in range(21):
        np.testing.assert_array_equal(store.read("thing/raw", i)["boxes"], before[i]["boxes"])


def test_nan_is_reported_by_verify(store: AlignedStore) -> None:
    values = [sample(i) for i in store.block_range(0)]
    values[2]["depth"][0, 0] = np.nan
    store.write_block("thing/raw", 0, values)
    assert "thing/raw: sample 2 array 'depth' has NaN or inf" in store.verify()


def test_redeclaring_a_part_checks_layout_and_configuration(store: AlignedStore) -> None:
    store.ensure("thing/raw", ARRAYS, dims={"C": 3}, provenance={"config_hash": "abc"})
    with pytest.raises(StoreError, match="another layout"):
        store.ensure("thing/raw", ARRAYS, dims={"C": 4})
    with pytest.raises(StoreError, match="another configuration"):
        store.ensure("thing/raw", ARRAYS, dims={"C": 3}, provenance={"config_hash": "xyz"})
    with pytest.raises(StoreError, match="dimension 'C' is not known"):
        store.ensure("other/raw", ARRAYS)


def test_info_reports_completeness_and_provenance(store: AlignedStore) -> None:
    store.write_block("thing/raw", 0, [sample(i) for i in store.block_range(0)])
    info = store.info()["parts"]["thing/raw"]
    assert (info["done"], info["todo"], info["complete"]) == (8, 13, False)
    assert info["provenance"]["labeler"] == "test" and info["bytes"] > 0


def _writer(path: str, blocks: list[int]) -> None:
    store = AlignedStore.open(path)
    for block in blocks:
        store.write_block("thing/raw", block, [sample(i) for i in store.block_range(block)])


def test_two_processes_writing_different_blocks_lose_nothing(store: AlignedStore) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(store.path), blocks)) for blocks in ([0, 2], [1])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    reopened = AlignedStore.open(store.path)
    assert reopened.verify() == []
    for i in range(21):
        np.testing.assert_array_equal(reopened.read("thing/raw", i)["depth"], sample(i)["depth"])


def test_a_store_built_with_other_plugins_is_refused(tmp_path: Path) -> None:
    from fourm_core.registry import Registry
    from fourm_core.vocab import build_manifest

    with_example = build_manifest(Registry(disabled=set(), strict=False), "tiny")
    without = build_manifest(Registry(disabled={"albedo"}, strict=False), "tiny")
    s = AlignedStore.create(tmp_path / "m.zarr", 4, 8, "tiny")
    s.set_manifest(with_example)
    AlignedStore.open(s.path, expected_manifest=with_example)
    with pytest.raises(StoreMismatchError, match="tok_albedo@64: only in the store"):
        AlignedStore.open(s.path, expected_manifest=without)


def test_creating_over_an_existing_store_is_refused(store: AlignedStore) -> None:
    with pytest.raises(StoreError, match="already exists"):
        AlignedStore.create(store.path, 4, 8, "tiny")
