"""The performance suite runs end to end at its quick size and reports every stage with a spread."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_suite_reports_every_stage(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_suite
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    record = bench_suite.main(["--quick", "--repeats", "1", "--out-dir", str(tmp_path)])
    stages = record["stages"]
    assert set(stages) == {
        "render",
        "source write",
        "pseudo-labeling",
        "loader",
        "masking",
        "train step",
        "generation",
        "retrieval",
    }
    for name in ("render", "source write", "pseudo-labeling", "loader", "masking"):
        assert stages[name]["rate"]["median"] > 0 and stages[name]["rate"]["n"] == 1, name
    assert 0 < stages["train step"]["mfu"] < 1.5 and stages["train step"]["step_s"]["median"] > 0
    assert stages["generation"]["kv_cache_speedup"]["median"] > 0
    assert all(c["latency_s"]["median"] > 0 for c in stages["generation"]["cases"].values())
    assert stages["retrieval"]["query_ms"]["median"] > 0
    (json_file,) = tmp_path.glob("*.json")
    assert json.loads(json_file.read_text())["stages"].keys() == stages.keys()
    markdown = json_file.with_suffix(".md").read_text()
    assert "| masking | samples/s |" in markdown and "MFU of the train step" in markdown
