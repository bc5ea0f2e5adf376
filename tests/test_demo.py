"""``fourm demo`` end to end on a tiny configuration: every stage runs, writes its outputs, and a second run reuses
them instead of redoing the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fourm_core.cli import main


def test_tiny_demo_runs_every_stage_and_reuses_its_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--samples", "64", "--tokenizer-seconds", "0.5", "--train-seconds", "1"]
    assert main(args) == 0
    timings = json.loads((out / "timings.json").read_text())
    assert "tokenizers and pre-tokenisation" in timings
    table = (out / "tokenizers.md").read_text()
    for name in ("depth", "semseg", "edge", "tok_rgb", "dinov2_global", "human_poses", "sam_instance"):
        assert f"| {name} |" in table
        assert (out / "tokenizers" / name / "model.safetensors").exists()
    assert (out / "tokenizers" / "depth" / "reconstructions.png").stat().st_size > 0
    sequences = (out / "sequences.md").read_text()
    assert "## `sam_instance` (sam_instance, assembled from stored items and their tokens)" in sequences
    assert "- string: `point v0=" in sequences
    info = json.loads((out / "store_info.json").read_text())
    assert info["n_samples"] == 64
    first = capsys.readouterr().out
    assert "7/7" in first
    summary = json.loads((out / "model" / "summary.json").read_text())
    assert summary["steps"] >= 5 and summary["validation_last"] < summary["validation_first"]
    assert (out / "model" / "final" / "model.safetensors").exists()
    assert (out / "model" / "pixels2all.png").stat().st_size > 0 and (out / "model" / "curves.svg").exists()
    assert main(args) == 0  # second run: store resumes, tokenizers are reused (no training lines)
    second = capsys.readouterr().out
    assert "steps, bound" in first and "steps, bound" not in second
