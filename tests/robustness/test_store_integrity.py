"""Damaged stores: a lost, overwritten or truncated chunk, a damaged ``_state`` chunk, a manifest that differs, two
labelers on one store, and the block writer killed at any write.

Zarr reads a missing chunk as its fill value, so before block records a deleted shard of a done block read back as
zeros while ``verify`` and ``info`` said "no problems, complete". Each test damages a store the way a disk, a user or
a second process would, and asserts that the damage is named (part, block, samples), that the block is marked to
redo, and that redoing it gives back exactly what an undamaged store holds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness.conftest import cli_env

from fourm_core.apps.cli.main import main
from fourm_core.registry import Registry
from fourm_core.spec import ArraySpec
from fourm_core.storage.manifest import require_manifest
from fourm_core.storage.store import DONE, AlignedStore, BlockDamagedError, StoreMismatchError
from helpers import EXAMPLE_PLUGIN

ARRAYS = (
    ArraySpec(name="depth", dtype="float32", shape=("H", "W")),
    ArraySpec(name="boxes", dtype="int32", shape=("N", 4), ragged=True),
    ArraySpec(name="caption", dtype="text", ragged=True),
)
PART = "thing/raw"


def sample(i: int, size: int = 8) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    return {
        "depth": rng.random((size, size), dtype=np.float32) + 0.5,
        "boxes": rng.integers(1, 64, (i % 3 + 1, 4)).astype(np.int32),
        "caption": f"sample {i}",
    }


def make_store(path: Path, n: int = 20) -> AlignedStore:
    store = AlignedStore.create(path, n_samples=n, image_size=8, preset="tiny", block_size=8)
    store.ensure(PART, ARRAYS, provenance={"labeler": "test", "config_hash": "abc"})
    for block in range(store.n_blocks):
        store.write_block(PART, block, [sample(i) for i in store.block_range(block)])
    return store


def rows_of(store: AlignedStore, part: str = PART) -> list[Any]:
    return [row for b in range(store.n_blocks) for row in store.read_block(part, b, check="none")]


def assert_rows_equal(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        for name in x or {}:
            np.testing.assert_array_equal(np.asarray(x[name]), np.asarray(y[name]))


# ---------------------------------------------------------------------------------------------------------------
# lost and damaged chunks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("delete_shard", "lost its file thing/raw/depth/c/1/0/0"),
        ("delete_ragged", "lost its file thing/raw/caption.b1.values/c/0"),
        ("delete_ragged_array", "lost its file thing/raw/boxes.b1.offsets/zarr.json"),
        ("overwrite_with_block_0", "digest mismatch"),
        ("truncate", "unreadable"),
    ],
)
def test_a_damaged_block_is_named_marked_to_redo_and_redone_exactly(tmp_path: Path, damage: str, reason: str) -> None:
    store = make_store(tmp_path / "s.zarr")
    before = rows_of(store)
    shard = store.path / PART / "depth" / "c"
    if damage == "delete_shard":
        (shard / "1" / "0" / "0").unlink()  # before: 8 depth maps of zeros, verify clean
    elif damage == "delete_ragged":
        (store.path / PART / "caption.b1.values" / "c" / "0").unlink()  # before: captions of NUL bytes
    elif damage == "delete_ragged_array":
        shutil.rmtree(store.path / PART / "boxes.b1.offsets")  # before: boxes of the block silently None
    elif damage == "overwrite_with_block_0":
        (shard / "1" / "0" / "0").write_bytes((shard / "0" / "0" / "0").read_bytes())  # decodes, wrong data
    else:
        file = shard / "1" / "0" / "0"
        file.write_bytes(file.read_bytes()[:20])

    reopened = AlignedStore.open(store.path)
    problems = reopened.verify(repair=True)
    assert len(problems) >= 1 and problems[0].startswith(f"{PART}: block 1 (samples 8..15): ")
    assert reason in problems[0] and problems[0].endswith("marked to redo")
    assert reopened.todo_blocks(PART) == [1]
    for block in reopened.todo_blocks(PART):  # what the command that wrote the part does on its rerun
        reopened.write_block(PART, block, [sample(i) for i in reopened.block_range(block)])
    assert reopened.verify() == []
    assert_rows_equal(rows_of(reopened), before)


def test_readers_refuse_a_block_that_lost_a_file_instead_of_reading_zeros(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.zarr")
    (store.path / PART / "depth" / "c" / "2" / "0" / "0").unlink()
    reader = AlignedStore.open(store.path, mode="r")
    with pytest.raises(BlockDamagedError, match=r"thing/raw: block 2 \(samples 16..19\): array 'depth' lost its file"):
        reader.read_block(PART, 2)
    with pytest.raises(BlockDamagedError, match="block 2"):
        reader.read(PART, 17)
    assert reader.read_block(PART, 1)[0] is not None  # the other blocks read as before
    info = reader.info()["parts"][PART]
    assert not info["complete"] and "block 2 (samples 16..19)" in info["damaged"][0]


@pytest.mark.parametrize("damage", ["bad_byte", "truncated"])
def test_a_damaged_state_chunk_is_reported_and_its_block_redone(tmp_path: Path, damage: str) -> None:
    store = make_store(tmp_path / "s.zarr")
    before = rows_of(store)
    chunk = store.path / PART / "_state" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    if damage == "bad_byte":
        data[3] = 7  # before: sample 3 silently neither done nor to do, verify clean
        chunk.write_bytes(bytes(data))
    else:
        chunk.write_bytes(bytes(data[:3]))  # before: verify raised a codec error (a traceback)
    reopened = AlignedStore.open(store.path)
    assert reopened.todo_blocks(PART) == [0]  # never a silently hidden block
    problems = reopened.verify(repair=True)
    assert problems and problems[0].startswith(f"{PART}: block 0 (samples 0..7): its state chunk")
    for block in reopened.todo_blocks(PART):
        reopened.write_block(PART, block, [sample(i) for i in reopened.block_range(block)])
    assert reopened.verify() == []
    assert_rows_equal(rows_of(reopened), before)


# ---------------------------------------------------------------------------------------------------------------
# the CLI: verify / info / label on a damaged labelled store, and the manifest
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    store = tmp_path / "w.zarr"
    assert main(["data", "synth", "--n", "12", "--image-size", "32", "--block-size", "8", "--out", str(store)]) == 0
    assert main(["data", "label", str(store), "--only", "rgb", "depth", "caption"]) == 0
    return store


def test_cli_verify_names_a_lost_depth_shard_and_label_redoes_it(
    labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = [np.array(r["depth"]) for r in rows_of(AlignedStore.open(labelled), "depth/raw")]
    shard = next((labelled / "depth" / "raw").glob("*/c/1/0/0"))
    shard.unlink()
    capsys.readouterr()
    assert main(["data", "info", str(labelled)]) == 0
    assert "depth/raw: block 1 (samples 8..11)" in " ".join(capsys.readouterr().out.split())
    assert main(["data", "verify", str(labelled)]) == 1  # before: 0, "store verified: no problems"
    out = " ".join(capsys.readouterr().out.split())
    assert "depth/raw: block 1 (samples 8..11)" in out and "lost its file" in out and "marked to redo" in out
    assert main(["data", "label", str(labelled), "--only", "rgb", "depth", "caption"]) == 0
    assert main(["data", "verify", str(labelled)]) == 0
    after = [np.array(r["depth"]) for r in rows_of(AlignedStore.open(labelled), "depth/raw")]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def _text_vocabulary(words: list[str]) -> Any:
    from fourm_core.vocab import build_text_vocabulary

    return build_text_vocabulary(words, vocab_size=5000)


def test_label_resumes_a_store_whose_manifest_records_a_text_vocabulary(
    labelled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the demo does: record the manifest with the vocabulary it built. The CLI must compare against it."""
    from fourm_core.vocab import build_manifest

    registry = Registry()
    text = _text_vocabulary(["a red cube", "two blue spheres"])
    AlignedStore.open(labelled).set_manifest(build_manifest(registry, "tiny", text))
    capsys.readouterr()
    assert main(["data", "label", str(labelled), "--only", "rgb", "depth", "caption"]) == 0  # before: refused
    assert main(["data", "verify", str(labelled)]) == 0
    # a different vocabulary given explicitly is refused, naming both
    other = _text_vocabulary(["an entirely different corpus"])
    with pytest.raises(StoreMismatchError) as err:
        require_manifest(AlignedStore.open(labelled), registry, other)
    assert text.fingerprint[:12] in str(err.value) and other.fingerprint[:12] in str(err.value)


def test_verify_and_info_compare_the_manifest(labelled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = AlignedStore.open(labelled)
    manifest = json.loads(json.dumps(store.root.attrs["manifest"]))
    key = sorted(manifest["modalities"])[0]
    manifest["modalities"][key]["id"] += 1000  # built by a plugin set that numbered this key differently
    manifest["modalities"][key]["providers"] = ["someone-else 9.9"]
    store.update_attrs({"manifest": manifest})
    capsys.readouterr()
    assert main(["data", "verify", str(labelled)]) == 1  # before: 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"manifest: {key}: id" in out and "someone-else 9.9" in out
    assert main(["data", "info", str(labelled), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["store"]["manifest"]
    assert any(d.startswith(f"{key}: id") for d in report["differences"])
    assert main(["data", "label", str(labelled), "--only", "rgb"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and f"{key}: id" in err[0]


# ---------------------------------------------------------------------------------------------------------------
# two labelers on one store
# ---------------------------------------------------------------------------------------------------------------


def test_two_label_processes_on_one_store_do_not_crash_each_other(tmp_path: Path) -> None:
    store = tmp_path / "w.zarr"
    env = cli_env()
    fourm = [sys.executable, "-m", "fourm_core.apps.cli.main"]
    synth = ["data", "synth", "--n", "16", "--image-size", "16", "--block-size", "2", "--out", str(store)]
    subprocess.run([*fourm, *synth], env=env, check=True, capture_output=True, timeout=300)
    label = [*fourm, "data", "label", str(store), "--only", "rgb", "depth", "normal", "semseg", "caption"]
    procs = [subprocess.Popen(label, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, f"{out[-2000:]}\n{err[-4000:]}"
    final = AlignedStore.open(store, mode="r")
    assert {"rgb/raw", "depth/raw", "normal/raw", "semseg/raw", "caption/raw"} <= set(final.parts())
    assert final.verify() == []


# ---------------------------------------------------------------------------------------------------------------
# the block writer killed at any write
# ---------------------------------------------------------------------------------------------------------------


class SimulatedKill(Exception):
    """Raised by the patched store in place of the process dying before this file write."""


def _values(n: int, seed: int, failed: frozenset[int]) -> list[dict[str, Any] | None]:
    return [None if i in failed else sample(seed * 1000 + i) for i in range(n)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kill_at=st.integers(0, 60), seed=st.integers(0, 50), failed=st.frozensets(st.integers(0, 19), max_size=3))
def test_the_block_writer_killed_at_any_write_resumes_to_the_same_store(
    tmp_path_factory: pytest.TempPathFactory, kill_at: int, seed: int, failed: frozenset[int]
) -> None:
    root = tmp_path_factory.mktemp("kill")
    values = _values(20, seed, failed)

    def write_todo(store: AlignedStore) -> None:
        for block in store.todo_blocks(PART):
            r = store.block_range(block)
            store.write_block(PART, block, values[r.start : r.stop], {i: f"bad {i}" for i in r if i in failed})

    reference = AlignedStore.create(root / "ref.zarr", n_samples=20, image_size=8, preset="tiny", block_size=8)
    reference.ensure(PART, ARRAYS, provenance={"config_hash": "abc"})
    write_todo(reference)

    crashed = AlignedStore.create(root / "crash.zarr", n_samples=20, image_size=8, preset="tiny", block_size=8)
    crashed.ensure(PART, ARRAYS, provenance={"config_hash": "abc"})
    original = zarr.storage.LocalStore.set
    writes = 0

    async def dying_set(self: Any, key: str, value: Any) -> None:
        nonlocal writes
        writes += 1
        if writes > kill_at:
            raise SimulatedKill(key)
        await original(self, key, value)

    zarr.storage.LocalStore.set = dying_set  # type: ignore[method-assign]
    try:
        write_todo(crashed)
    except SimulatedKill:
        pass
    finally:
        zarr.storage.LocalStore.set = original  # type: ignore[method-assign]

    resumed = AlignedStore.open(crashed.path)
    write_todo(resumed)
    assert resumed.verify() == reference.verify()
    np.testing.assert_array_equal(resumed.state(PART), reference.state(PART))
    assert resumed.errors(PART) == reference.errors(PART)
    assert_rows_equal(rows_of(resumed), rows_of(reference))
    assert all((resumed.block_state(PART, b) != 0).all() for b in range(resumed.n_blocks))
    assert (resumed.state(PART) == DONE).sum() == 20 - len(failed)


# ---------------------------------------------------------------------------------------------------------------
# tokenize checks the raw blocks it reads
# ---------------------------------------------------------------------------------------------------------------


def test_tokenize_never_encodes_a_damaged_raw_block(labelled: Path, tmp_path: Path) -> None:
    """Before: the lost depth shard read back as zeros and tokenize wrote tokens of 8 flat depth maps."""
    from fourm_core.tokenizers import Tokenizer, config_from_spec
    from fourm_core.tokenizers.pretokenize import tokenize_store

    registry = Registry()
    small = {"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "mlp_width": 64, "input_size": 32, "n_tokens": 16}
    config = config_from_spec(registry.get("depth").spec, "tiny").model_copy(update=small)
    if config.diffusion is not None:
        config = config.model_copy(update={"diffusion": config.diffusion.model_copy(update={"dim": 32, "depth": 1})})
    tok = Tokenizer(config)  # untrained: what is asserted is which blocks it encodes
    tok.save_pretrained(tmp_path / "toks" / tok.name)
    next((labelled / "depth" / "raw").glob("*/c/0/0/0")).unlink()
    results = {r.modality: r for r in tokenize_store(labelled, tmp_path / "toks", registry, only=["depth"])}
    assert results["depth"].done == 4  # block 1 only (samples 8..11)
    assert "depth/raw: block 0 (samples 0..7)" in results["depth"].note and "marked to redo" in results["depth"].note
    after = AlignedStore.open(labelled)
    assert after.todo_blocks("depth/tokens") == [0] and after.todo_blocks("depth/raw") == [0]
