"""``fourm data`` end to end on tiny inputs: synth, ingest, label, info --json, verify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.apps.cli.main import main
from helpers import EXAMPLE_PLUGIN


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)


def test_synth_label_info_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "w.zarr"
    assert main(["data", "synth", "--n", "12", "--image-size", "32", "--block-size", "8", "--out", str(store)]) == 0
    only = ["rgb", "depth", "semseg", "det", "caption", "metadata_semantic"]
    assert main(["data", "label", str(store), "--only", *only]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    records = {r["modality"]: r for r in info["modalities"] if r["form"] == "raw"}
    assert set(records) == set(only)
    assert all(r["complete"] and r["completeness"] == 1.0 for r in records.values())
    assert records["depth"]["provenance"]["labeler"] == "source"
    assert main(["data", "verify", str(store)]) == 0
    # a second synth into the same store resumes (nothing left to do) instead of failing
    assert main(["data", "synth", "--n", "12", "--image-size", "32", "--block-size", "8", "--out", str(store)]) == 0
    assert "wrote 0 samples" in capsys.readouterr().out


def test_ingest_reports_bad_files_and_labels_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (photos / "broken.jpg").write_bytes(b"")
    (photos / "p0.txt").write_text("a noisy picture")
    store = tmp_path / "p.zarr"
    assert main(["data", "ingest", str(photos), "--image-size", "32", "--out", str(store)]) == 0
    out = capsys.readouterr().out
    assert "wrote 3 samples (1 failed)" in out and "broken.jpg" in out
    assert main(["data", "label", str(store), "--only", "rgb", "caption", "depth", "canny_edge"]) == 0
    out = capsys.readouterr().out
    assert "skip depth" in out and "the source has no 'depth'" in out
    assert main(["data", "verify", str(store)]) == 1  # the broken file and the captionless photos are reported
    assert "broken.jpg" in capsys.readouterr().out
