"""``fourm demo`` end to end on a tiny configuration: every stage runs, writes its outputs, and a second run reuses
them instead of redoing the work; the report it ends with loads in headless Chromium (``test_report.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import assert_report_loads, chromium

from fourm_core.apps.cli.main import main


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
    assert "8/8" in first and "report:" in first
    summary = json.loads((out / "model" / "summary.json").read_text())
    assert summary["steps"] >= 5 and summary["validation_last"] < summary["validation_first"]
    assert (out / "model" / "final" / "model.safetensors").exists()
    assert (out / "model" / "pixels2all.png").stat().st_size > 0 and (out / "model" / "curves.svg").exists()
    generation = json.loads((out / "generation" / "generation.json").read_text())
    scenes = generation["scenes"]
    assert [s["index"] for s in scenes] == [32, 33, 34]  # the first held-out scenes (val_samples 32 of 64)
    kinds = {t["kind"] for t in scenes[0]["targets"]}
    assert kinds == {"image_tokens", "global_tokens", "sequence"} and len(scenes[0]["targets"]) >= 18
    assert all((out / t["picture"]).stat().st_size > 0 for s in scenes for t in s["targets"] if "picture" in t)
    assert len(generation["chains"]) == 2 and (out / generation["chains"][0]["picture"]).exists()
    queries = generation["retrieval"]["queries"]
    assert {q["by"] for q in queries} == {"rgb@64", "caption"} and all(len(q["hits"]) == 5 for q in queries)
    evaluation = generation["evaluation"]  # the Table 1 shape for the demo's own model
    assert list(evaluation) == ["one pass", "ensemble of 4"]
    one = evaluation["one pass"]
    assert one and all(row["n"] == 32 and row["model"] and row["bound"] for row in one.values())
    assert "generation and retrieval" in timings
    report = out / "report.html"
    assert main(args) == 0  # second run: store resumes, tokenizers are reused (no training lines)
    second = capsys.readouterr().out
    assert "steps, bound" in first and "steps, bound" not in second
    assert "(reused)" in second and "8/8" in second
    # ground truth + prediction per picture target and scene, inputs, chains, hits: all decoded by the browser
    pictures = sum("picture" in t for s in scenes for t in s["targets"])
    if chromium() is not None:  # without it (and FOURM_REQUIRE_CHROMIUM unset) the rest of this test still counts
        assert_report_loads(report, pictures + len(scenes) + 2 * len(generation["chains"]))
