"""Smoke test of ``benchmarks/bench_generate.py`` on the untrained demo-size path (no trained files needed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_bench():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "bench_generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _positive(row: dict) -> None:
    lat = row["latency_s"]
    assert 0 < lat["min"] <= lat["median"] <= lat["max"]
    assert row["tokens"] > 0 and row["tokens_per_s"] > 0


def test_bench_generate_untrained_smoke(tmp_path: Path) -> None:
    bench = _load_bench()
    record = bench.main(
        [
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--batch-sizes",
            "1",
            "--steps",
            "2",
            "--seq-tokens",
            "3",
            "--lengths",
            "2,3",
            "--out-dir",
            str(tmp_path),
            "--date",
            "2000-01-01",
        ]
    )
    (json_path,) = tmp_path.glob("2000-01-01-*-generate.json")
    assert json_path.with_suffix(".md").is_file()
    saved = json.loads(json_path.read_text())
    assert saved == json.loads(json.dumps(record))
    for section in ("targets", "kv_cache", "cfg", "end_to_end"):
        assert section in saved
    assert "untrained" in saved["model"]["source"]
    cases = {r["case"] for r in saved["targets"]}
    assert {"image maskgit 1 step", "image maskgit 2 steps", "image roar 2 steps", "global maskgit 1 step"} <= cases
    assert any(c.startswith("sequence autoregressive 3 tokens") for c in cases)
    for row in saved["targets"]:
        _positive(row)
    assert [r["length"] for r in saved["kv_cache"]] == [2, 3]
    for row in saved["kv_cache"]:
        _positive(row["cache"])
        _positive(row["no_cache"])
        assert row["speedup"]["median"] > 0
    (cfg,) = saved["cfg"]
    _positive(cfg["scale_1"])
    _positive(cfg["scale_3"])
    assert cfg["ratio"]["median"] > 0
    assert "skipped" in saved["end_to_end"]  # the untrained path has no tokenizers to decode with
