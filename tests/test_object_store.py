"""Stores on fsspec URLs: ``memory://`` in process, and ``s3://`` on a real S3 server (moto's server mode on
127.0.0.1, through s3fs and botocore as on a cluster): synth, two label shards at once, tokenize, verify and train,
equal to the same run on local disk; and the object-store leases that replace POSIX locks there."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fourm_core.apps.cli.main import main
from fourm_core.errors import UserError
from fourm_core.registry import Registry
from fourm_core.spec import ArraySpec
from fourm_core.storage.location import ENV_OPTIONS, StorageOptionsError, StoreLocation
from fourm_core.storage.locks import Lease, block_lock
from fourm_core.storage.store import DONE, AlignedStore, StoreError
from fourm_core.testing.s3 import S3Server, serve_or_skip
from helpers import EXAMPLE_PLUGIN

#: cheap labelers: a fixed image array and ragged text (test_shards.py covers the dependency chains)
ONLY = ["depth", "caption"]
LABEL = ["--only", *ONLY, "--allow-random-teachers", "--no-download"]
ARRAYS = [ArraySpec(name="x", dtype="float32", shape=(3,)), ArraySpec(name="text", dtype="text", ragged=True)]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 with a bucket (skipped when moto[server] or s3fs is missing)."""
    yield from serve_or_skip()


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)


def rows(block: range) -> list[dict[str, object]]:
    return [{"x": np.full(3, i, np.float32), "text": f"sample {i}"} for i in block]


def fill(store: AlignedStore, part: str = "p") -> None:
    store.ensure(part, ARRAYS)
    for block in range(store.n_blocks):
        with store.claim(part, block) as todo:
            assert todo
            store.write_block(part, block, rows(store.block_range(block)))


def fourm(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``fourm ARGS`` in a process of its own, reaching the S3 server through ``env``."""
    full = {**os.environ, **env, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN}
    cmd = [sys.executable, "-m", "fourm_core.apps.cli.main", *args]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_all(env: dict[str, str], *commands: list[str]) -> None:
    """Start every command, then wait for all: they run at the same time."""
    running = [fourm(env, *c) for c in commands]
    for p, c in zip(running, commands):
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, f"fourm {' '.join(c)} failed:\n{out}"


def assert_equal_stores(a: AlignedStore, b: AlignedStore) -> None:
    """Same parts, provenance, states and every array of every sample."""
    assert a.parts() == b.parts()
    for part in a.parts():
        assert a.provenance(part) == b.provenance(part), part
        np.testing.assert_array_equal(a.state(part), b.state(part), err_msg=part)
        for block in range(a.n_blocks):
            for x, y in zip(a.read_block(part, block), b.read_block(part, block), strict=True):
                assert (x is None) == (y is None), (part, block)
                for name in x or {}:
                    if isinstance(x[name], np.ndarray):
                        np.testing.assert_array_equal(x[name], y[name], err_msg=f"{part}/{name} block {block}")
                    else:
                        assert x[name] == y[name], (part, name, block)


# ----------------------------------------------------------------------------------------------------------------
# locations


def test_locations_parse_paths_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = StoreLocation.parse(tmp_path / "a.zarr")
    assert local.is_local and local.local == tmp_path / "a.zarr" and local.url == str(tmp_path / "a.zarr")
    assert StoreLocation.parse(f"file://{tmp_path}/a.zarr").local == tmp_path / "a.zarr"
    monkeypatch.setenv(ENV_OPTIONS, '{"endpoint_url": "http://127.0.0.1:1"}')
    remote = StoreLocation.parse("s3://bucket/x.zarr/")
    assert remote.url == "s3://bucket/x.zarr" and remote.options["endpoint_url"] == "http://127.0.0.1:1"
    assert StoreLocation.parse("s3://bucket/x.zarr", {"anon": True}).options == {
        "use_listings_cache": False,
        "anon": True,
    }
    monkeypatch.setenv(ENV_OPTIONS, "{not json")
    with pytest.raises(StorageOptionsError, match=f"{ENV_OPTIONS} is not valid JSON"):
        StoreLocation.parse("s3://bucket/x.zarr")
    monkeypatch.setenv(ENV_OPTIONS, "[1]")
    with pytest.raises(StorageOptionsError, match="must be a JSON object"):
        StoreLocation.parse("s3://bucket/x.zarr")
    monkeypatch.delenv(ENV_OPTIONS)
    with pytest.raises(StorageOptionsError, match="fsspec knows no nosuch:// filesystem"):
        StoreLocation.parse("nosuch://bucket/x.zarr")
    assert isinstance(StorageOptionsError("x"), UserError)
    try:
        import gcsfs  # noqa: F401
    except ImportError:  # the usual case here: the backend of gs:// is not installed, which is one line naming it
        with pytest.raises(StorageOptionsError, match=r"gs:// stores need the gcsfs package \(pip install gcsfs\)"):
            StoreLocation.parse("gs://bucket/x.zarr")


def test_a_missing_or_unreachable_url_store_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreError, match="no store at memory://nowhere.zarr"):
        AlignedStore.open("memory://nowhere.zarr")
    assert main(["data", "info", "memory://nowhere.zarr"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no store at memory://nowhere.zarr" in err, err
    pytest.importorskip("s3fs")
    # nothing listens on port 9 (discard): the first request fails, once (no retries)
    options = {"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}}
    monkeypatch.setenv(ENV_OPTIONS, json.dumps(options))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    assert main(["data", "info", "s3://bucket/x.zarr"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "s3://bucket/x.zarr: cannot reach the store (EndpointConnectionError" in err, err
    assert "given: config_kwargs, endpoint_url" in err  # names, never values (they may hold secrets)


# ----------------------------------------------------------------------------------------------------------------
# memory://


def test_memory_store_writes_reads_verifies_and_catches_a_lost_shard() -> None:
    url = "memory://fourm-tests/m.zarr"
    store = AlignedStore.create(url, 40, 32, "tiny", block_size=16, overwrite=True)
    fill(store)
    reopened = AlignedStore.open(url, mode="r")
    assert reopened.url == url and reopened.read("p", 33)["text"] == "sample 33"
    np.testing.assert_array_equal(reopened.read("p", 17)["x"], np.full(3, 17, np.float32))
    assert reopened.verify() == [] and (reopened.state("p") == DONE).all()
    assert reopened.info()["parts"]["p"]["bytes"] > 0
    with pytest.raises(StoreError, match="already exists"):
        AlignedStore.create(url, 40, 32, "tiny", block_size=16)
    # files that are not a store are never cleared by a create either (Zarr's "w" mode would delete them)
    StoreLocation.parse("memory://fourm-tests/other").write_bytes("notes.txt", b"keep")
    with pytest.raises(StoreError, match="memory://fourm-tests/other already exists"):
        AlignedStore.create("memory://fourm-tests/other", 4, 32, "tiny")
    with pytest.raises(StoreError, match="not a local folder"):
        _ = reopened.path
    reopened.location.remove("p/x/c/1/0")  # block 1's shard
    writer = AlignedStore.open(url)
    assert writer.verify(repair=True) == [
        "p: block 1 (samples 16..31): array 'x' lost its file p/x/c/1/0; marked to redo",
        "p: 16 samples not written (first: [16, 17, 18, 19, 20])",
    ]
    assert writer.todo_blocks("p") == [1]
    with writer.claim("p", 1) as todo:
        assert todo
        writer.write_block("p", 1, rows(writer.block_range(1)))
    assert AlignedStore.open(url, mode="r").verify() == []


def test_ingest_records_its_file_list_in_a_url_store_and_a_resume_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate("acd"):
        Image.fromarray(np.full((12, 12, 3), 40 * i, np.uint8)).save(photos / f"{name}.png")
    url = "memory://fourm-tests/photos.zarr"
    ingest = ["data", "ingest", str(photos), "--image-size", "16", "--block-size", "2", "--out", url]
    assert main(ingest) == 0
    assert [e[0] for e in json.loads(StoreLocation.parse(url).read_bytes("source_files.json"))] == [
        "a.png",
        "c.png",
        "d.png",
    ]
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(photos / "b.png")
    capsys.readouterr()
    assert main(ingest) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"changed since {url} was made: 1 added (b.png)" in err, err
    assert main([*ingest, "--append"]) == 0
    store = AlignedStore.open(url, mode="r")
    keys = [row["key"] for b in range(store.n_blocks) for row in store.read_block("source", b) if row]
    assert keys == ["a", "c", "d", "b"] and store.verify() == []


# ----------------------------------------------------------------------------------------------------------------
# leases on the S3 server


#: a writer that takes the root lease and is killed (SIGKILL) while holding it
TAKE_AND_DIE = """
import os, signal, sys
from fourm_core.storage.location import StoreLocation
from fourm_core.storage.locks import Lease
lease = Lease(StoreLocation.parse(sys.argv[1]), "root", ttl=0.5)
lease.acquire()
print(lease.token, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writers_lease_is_broken_after_its_time_to_live(s3_server: S3Server) -> None:
    url = s3_server.url("leases.zarr")
    killed = subprocess.run(
        [sys.executable, "-c", TAKE_AND_DIE, url], env={**os.environ, **s3_server.env}, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    dead = killed.stdout.strip()
    location = StoreLocation.parse(url, s3_server.storage_options)
    assert json.loads(location.read_bytes(".locks/root.lease"))["token"] == dead  # left behind
    # two waiters race to break it: one breaks and holds, the other waits for its release (never both at once)
    held: list[tuple[float, float, str]] = []
    start = time.monotonic()

    def take() -> None:
        with Lease(StoreLocation.parse(url, s3_server.storage_options), "root", ttl=0.5) as taker:
            got = time.monotonic()
            assert json.loads(location.read_bytes(".locks/root.lease"))["token"] == taker.token
            time.sleep(0.3)
            held.append((got, time.monotonic(), taker.token))

    takers = [threading.Thread(target=take) for _ in range(2)]
    for t in takers:
        t.start()
    for t in takers:
        t.join(timeout=60)
    (a_start, a_end, _), (b_start, _, _) = sorted(held)
    assert len(held) == 2 and a_start - start >= 0.5 and b_start >= a_end
    assert not location.exists(".locks/root.lease")  # released: deleted
    assert location.exists(f".locks/root.broken.{dead}")  # the one break of that dead lease


def test_a_live_holders_lease_is_not_broken(s3_server: S3Server) -> None:
    """A holder that keeps beating keeps its lease past many times the time to live; the waiter gets it only after
    release."""
    location = StoreLocation.parse(s3_server.url("live.zarr"), s3_server.storage_options)
    order: list[str] = []
    with Lease(location, "root", ttl=0.3):

        def wait() -> None:
            with Lease(location, "root", ttl=0.3):
                order.append("waiter")

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.5)
        order.append("holder done")
    waiter.join(timeout=30)
    assert order == ["holder done", "waiter"]


def _claim_and_write(url: str, options: dict[str, object], out: mp.Queue) -> None:  # type: ignore[type-arg]
    store = AlignedStore.open(url, storage_options=options)
    with store.claim("p", 0) as todo:
        if todo:
            time.sleep(0.5)  # the other claimant arrives while this one writes
            store.write_block("p", 0, rows(store.block_range(0)))
    out.put(todo)


def test_two_processes_claim_one_block_one_writes_the_other_skips(s3_server: S3Server) -> None:
    url = s3_server.url("claims.zarr")
    store = AlignedStore.create(url, 16, 32, "tiny", block_size=16, storage_options=s3_server.storage_options)
    store.ensure("p", ARRAYS)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_and_write, args=(url, s3_server.storage_options, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=5) for _ in procs) == [False, True]
    assert AlignedStore.open(url, mode="r", storage_options=s3_server.storage_options).verify() == []


def test_a_block_lock_on_an_unknown_object_store_is_one_line(tmp_path: Path) -> None:
    # a scheme fsspec has, without a conditional PUT fourm knows: the local filesystem under its "local" name
    location = StoreLocation.parse(f"local://{tmp_path}/x.zarr")
    with pytest.raises(
        StorageOptionsError, match=r"local:// store needs locks, which need a conditional PUT \(create if absent\)"
    ):
        with block_lock(location, "p", 0):
            pass


# ----------------------------------------------------------------------------------------------------------------
# the "done when": synth, two label shards at once, tokenize, verify, train; equal to local disk


def fit_tokenizer(store: Path, out: Path) -> Path:
    """A tiny depth tokenizer fitted for 2 steps on ``store`` (the tokens only need to be the same on both stores)."""
    from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
    from fourm_core.tokenizers.training import collect, fit

    registry = Registry(disabled={EXAMPLE_PLUGIN})
    config = config_from_spec(registry.get("depth").spec, "tiny").model_copy(
        update={"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "diffusion": None}
    )
    tok = Tokenizer(config)
    split = collect(AlignedStore.open(store, mode="r"), tok.config, registry, 0.2)
    fit(tok, split.train + split.held_out, TrainConfig(steps=2, max_seconds=None, batch_size=8))
    tok.save_pretrained(out / tok.name)
    return out


def test_s3_store_synth_two_label_shards_tokenize_verify_train_equal_local(
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, local = s3_server.url("world.zarr"), str(tmp_path / "world.zarr")
    monkeypatch.setenv(ENV_OPTIONS, json.dumps(s3_server.storage_options))
    synth = ["data", "synth", "--n", "32", "--block-size", "16", "--preset", "tiny", "--seed", "3"]
    for where in (url, local):
        assert main([*synth, "--out", where]) == 0
    label = [["data", "label", url, *LABEL, "--shard", s] for s in ("0/2", "1/2")]
    run_all(s3_server.env, label[0], label[1], ["data", "label", local, *LABEL])  # two S3 shards at once
    tokenize = ["--tokenizers", str(fit_tokenizer(Path(local), tmp_path / "toks")), "--only", "depth", "--crops", "2"]
    for where in (url, local):
        assert main(["data", "tokenize", where, *tokenize]) == 0
        capsys.readouterr()
        assert main(["data", "verify", where]) == 0
        assert "no problems" in capsys.readouterr().out
    remote = AlignedStore.open(url, mode="r")
    assert sorted(remote.parts()) == sorted(["source", "crops", "depth/tokens", *(f"{m}/raw" for m in ONLY)])
    assert all((remote.state(p) == DONE).all() for p in remote.parts())
    assert_equal_stores(remote, AlignedStore.open(local, mode="r"))
    assert main(["data", "info", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["store"]["path"] == url and all(m["complete"] and m["bytes"] > 0 for m in info["modalities"])

    # `fourm train` reads the S3 store, with its storage options in the config rather than the environment
    import yaml

    from fourm_core.vocab import build_text_vocabulary

    monkeypatch.delenv(ENV_OPTIONS)
    texts = [row["text"] for b in range(remote.n_blocks) for row in remote.read_block("caption/raw", b) if row]
    registry = Registry(disabled={EXAMPLE_PLUGIN})
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(texts, words).save(tmp_path / "text_tokenizer.json")
    model = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}
    config = {
        "out_dir": str(tmp_path / "run"),
        "vocabulary": str(vocab),
        "datasets": [{"name": "s3", "store": url, "storage_options": s3_server.storage_options, "val_samples": 4}],
        "input_tokens": 32,
        "target_tokens": 32,
        "model": {"size": "tiny", "preset": "tiny", "overrides": model},
        "optim": {"lr": 3e-3},
        "schedule": {"steps": 2, "warmup_steps": 1},
        "engine": {"micro_batch_size": 4, "threads": 1, "peak_gflops": 10.0},
        "log_every": 1,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "train.yaml")]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(losses) == 2 and np.isfinite(losses).all()
