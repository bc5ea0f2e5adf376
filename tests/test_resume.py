"""Labeling survives SIGKILL: killed several times and restarted, it ends with every sample labelled once and the
same bytes as an uninterrupted run."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fourm_core.labeling.runner import label_store
from fourm_core.registry import Registry
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import DONE, FAILED, AlignedStore
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS, BlobSource

MODALITIES = [
    "rgb",
    "depth",
    "normal",
    "semseg",
    "det",
    "caption",
    "sam_instance",
    "sam_edge",
    "canny_edge",
    "color_palette",
    "metadata_image",
    "metadata_semantic",
    "metadata_geometric",
]


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "source.zarr"
    store = create_source_store(path, BlobSource(192), image_size=32, preset="tiny", block_size=8)
    report = write_source(store, BlobSource(192))
    assert report.failed == 1 and "corrupt on purpose" in report.errors[7]
    return path


def _label_cmd(path: Path) -> list[str]:
    code = "import sys; from fourm_core.apps.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "data", "label", str(path), "--workers", "2", "--only", *MODALITIES]


def _done_samples(path: Path) -> int:
    """Samples written so far over all labelled parts (read without locking: a torn read counts as 0)."""
    try:
        store = AlignedStore.open(path, mode="r")
        return sum(int((store.state(p) != 0).sum()) for p in store.parts() if p.endswith("/raw"))
    except Exception:
        return 0


def _assert_same(a: AlignedStore, b: AlignedStore) -> None:
    assert a.parts() == b.parts()
    for part in a.parts():
        np.testing.assert_array_equal(a.state(part), b.state(part))
        assert a.errors(part) == b.errors(part)
        for block in range(a.n_blocks):
            for x, y in zip(a.read_block(part, block), b.read_block(part, block)):
                assert (x is None) == (y is None)
                if x is None:
                    continue
                for name in x:
                    if isinstance(x[name], np.ndarray):
                        np.testing.assert_array_equal(x[name], y[name], err_msg=f"{part} block {block} {name}")
                    else:
                        assert x[name] == y[name], (part, block, name)


def test_sigkill_and_restart_equals_an_uninterrupted_run(source_store: Path, tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    shutil.copytree(source_store, clean)
    shutil.copytree(source_store, killed)
    label_store(clean, registry=Registry(disabled={EXAMPLE_PLUGIN}), only=MODALITIES, options=RANDOM_TEACHERS)

    env = {**os.environ, "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN, "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    kills, exits, attempt = 0, [], 0
    # three kills at random points; a run that ends on its own is retried (up to three times), unless it crashed
    while kills < 3 and attempt < 6:
        before = _done_samples(killed)
        log = tmp_path / f"run{attempt}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                _label_cmd(killed), env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
            target = before + rng.randint(20, 120)  # kill somewhere in the middle of the work, at a random point
            deadline = time.monotonic() + 120
            while proc.poll() is None and _done_samples(killed) < target and time.monotonic() < deadline:
                time.sleep(0.05)
            ours = proc.poll() is None
            if ours:
                os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker processes, wherever they are
                kills += 1
            proc.wait()
        attempt += 1
        if not ours:  # it ended on its own: a crash fails here, with its output
            exits.append(
                f"run {attempt} ended with {proc.returncode} at {_done_samples(killed)} samples:\n"
                + log.read_text()[-2000:]
            )
            assert proc.returncode in (0, -signal.SIGKILL), exits[-1]
            if proc.returncode == 0:
                break  # everything is labelled: nothing left to kill
    assert kills == 3, "runs ended before they could be killed:\n" + "\n".join(exits)
    finish = subprocess.run(_label_cmd(killed), env=env, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stdout + finish.stderr

    a, b = AlignedStore.open(clean), AlignedStore.open(killed)
    for part in b.parts():
        state = b.state(part)
        assert ((state == DONE) | (state == FAILED)).all(), part
    _assert_same(a, b)
    assert b.verify() == a.verify()
