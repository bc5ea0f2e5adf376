"""``--shard I/N``: N processes label and pre-tokenise one store at once, on disjoint blocks, and their union equals a
one-process run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fourm_core.apps.cli.main import main
from fourm_core.errors import UsageError
from fourm_core.labeling.runner import label_store
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.storage.shards import Shard, as_shard
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import DONE, AlignedStore
from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
from fourm_core.tokenizers.pretokenize import CROPS_PART, tokenize_store
from fourm_core.tokenizers.training import collect, fit
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS

#: cheap labelers with a dependency chain (metadata_semantic needs semseg) and ragged, text and fixed arrays
ONLY = ["rgb", "depth", "semseg", "metadata_semantic", "caption", "canny_edge"]
LABEL = ["--only", *ONLY, "--allow-random-teachers", "--no-download"]


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic source store of 5 blocks (the last one short), not labelled."""
    path = tmp_path_factory.mktemp("shards") / "source.zarr"
    source = SyntheticSource(36, 64, 3)
    write_source(create_source_store(path, source, 64, "tiny", 8), source)
    return path


def copy(store: Path, to: Path) -> Path:
    shutil.copytree(store, to)
    return to


def fourm(*args: str) -> subprocess.Popen[str]:
    """``fourm ARGS`` in a process of its own (one thread, offline, the example plugin disabled)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN}
    cmd = [sys.executable, "-m", "fourm_core.apps.cli.main", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def concurrently(*commands: list[str]) -> None:
    """Start every command, then wait for all: the shards run at the same time."""
    running = [fourm(*c) for c in commands]
    for p, c in zip(running, commands):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, f"fourm {' '.join(c)} failed:\n{out}"


def assert_same_parts(a: Path, b: Path, parts: list[str]) -> None:
    """Every sample of every part reads back equal (arrays, json and text), with the same provenance."""
    sa, sb = AlignedStore.open(a, mode="r"), AlignedStore.open(b, mode="r")
    for part in parts:
        assert sa.provenance(part) == sb.provenance(part), part
        assert (sa.state(part) == DONE).all() and (sb.state(part) == DONE).all(), part
        for block in range(sa.n_blocks):
            for x, y in zip(sa.read_block(part, block), sb.read_block(part, block), strict=True):
                assert x is not None and y is not None and x.keys() == y.keys()
                for name in x:
                    if isinstance(x[name], np.ndarray):
                        np.testing.assert_array_equal(x[name], y[name], err_msg=f"{part}/{name} block {block}")
                    else:
                        assert x[name] == y[name], (part, name, block)


# ----------------------------------------------------------------------------------------------------------------


def test_shards_cover_every_block_exactly_once() -> None:
    for count in range(1, 6):
        owned = [Shard(i, count).blocks(range(23)) for i in range(count)]
        assert sorted(b for blocks in owned for b in blocks) == list(range(23))
        assert max(map(len, owned)) - min(map(len, owned)) <= 1  # round robin: balanced
    assert as_shard(None) == Shard(0, 1) and as_shard("1/3") == as_shard((1, 3)) == Shard(1, 3)


@pytest.mark.parametrize("bad", ["2/2", "3/2", "x/y", "0/0", "-1/2", "1", "1/2/3", ""])
def test_a_bad_shard_is_one_line(bad: str, source_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="expected I/N"):
        as_shard(bad)
    for command in (["label", str(source_store)], ["tokenize", str(source_store), "--tokenizers", "."]):
        with pytest.raises(SystemExit) as exit_:
            main(["data", *command, f"--shard={bad}"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--shard" in err and "expected I/N" in err, err
    with pytest.raises(UsageError):  # the Python API too, before touching the store
        label_store(source_store, shard=bad)


def test_two_shards_at_once_equal_one_run_then_tokenise_the_same(
    source_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry(disabled={EXAMPLE_PLUGIN})
    one, two = copy(source_store, tmp_path / "one.zarr"), copy(source_store, tmp_path / "two.zarr")
    label_store(one, registry=registry, only=ONLY, options=RANDOM_TEACHERS)
    label = ["data", "label", str(two), *LABEL]
    concurrently([*label, "--shard", "0/2"], [*label, "--shard", "1/2"])
    assert_same_parts(one, two, [f"{m}/raw" for m in ONLY])

    # a tiny untrained-quality tokenizer (2 steps): what matters is that both stores get the same tokens
    config = config_from_spec(registry.get("depth").spec, "tiny").model_copy(
        update={"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "diffusion": None}
    )
    tok = Tokenizer(config)
    split = collect(AlignedStore.open(one, mode="r"), tok.config, registry, 0.2)
    fit(tok, split.train, TrainConfig(steps=2, max_seconds=None, batch_size=8))
    tok.save_pretrained(tmp_path / "toks" / tok.name)
    tokenize_store(one, tmp_path / "toks", registry, only=["depth"], crops=2)
    tokenize = ["data", "tokenize", str(two), "--tokenizers", str(tmp_path / "toks"), "--only", "depth", "--crops", "2"]
    concurrently([*tokenize, "--shard", "0/2"], [*tokenize, "--shard", "1/2"])
    assert_same_parts(one, two, [CROPS_PART, "depth/tokens"])

    capsys.readouterr()
    assert main(["data", "verify", str(two)]) == 0
    assert "no problems" in capsys.readouterr().out


def test_a_shard_marks_only_its_blocks_and_a_plain_run_finishes(
    source_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry(disabled={EXAMPLE_PLUGIN})
    store = copy(source_store, tmp_path / "s.zarr")
    plans = label_store(store, registry=registry, only=["rgb", "depth"], options=RANDOM_TEACHERS, shard="1/3")
    opened = AlignedStore.open(store, mode="r")
    mine = Shard(1, 3).blocks(range(opened.n_blocks))
    assert mine == [1, 4] and {p.name: p.blocks_todo for p in plans if p.labeler} == {"rgb": 2, "depth": 2}
    for block in range(opened.n_blocks):
        written = (opened.block_state("depth/raw", block) == DONE).all()
        assert written == (block in mine), block
    # the same shard again has nothing left; the other blocks wait for a run without --shard, which finishes them
    again = label_store(store, registry=registry, only=["depth"], options=RANDOM_TEACHERS, shard=(1, 3))
    assert again[0].blocks_todo == 0
    capsys.readouterr()
    assert main(["data", "label", str(store), "--only", "rgb", "depth", "--no-download"]) == 0
    whole = copy(source_store, tmp_path / "whole.zarr")
    label_store(whole, registry=registry, only=["rgb", "depth"], options=RANDOM_TEACHERS)
    assert_same_parts(whole, store, ["rgb/raw", "depth/raw"])
