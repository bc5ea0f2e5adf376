"""Helpers shared by benchmark scripts: machine naming, result paths, interleaved timing and summaries.

Project rule: on a shared machine absolute times drift, so a benchmark compares ratios measured in one run and
reports medians over repeats with their spread. :func:`time_interleaved` runs one repeat of every case before the
next repeat of any, so drift in the machine's speed hits every case alike, and :func:`paired_ratio` compares two
cases repeat by repeat.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def machine_tag() -> str:
    """``x86_64-2core``: the machine part of result file names."""
    return f"{platform.machine()}-{os.cpu_count()}core"


def result_stem(name: str, out_dir: str | os.PathLike[str] | None = None, date: str | None = None) -> Path:
    """``<out_dir>/<date>-<machine>-<name>`` (no suffix; the date is today's in UTC unless given)."""
    date = date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return Path(out_dir or RESULTS_DIR) / f"{date}-{machine_tag()}-{name}"


def machine_record(threads: int) -> dict[str, Any]:
    """What the machine was when the numbers were taken (stored with every result)."""
    import torch

    return {
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }


def spread(values: Sequence[float], digits: int = 5) -> dict[str, float]:
    """Median, min, max and the quartiles of ``values``."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": round(statistics.median(ordered), digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
        "q1": round(q1, digits),
        "q3": round(q3, digits),
        "n": len(ordered),
    }


def time_interleaved(
    cases: Mapping[str, Callable[[int], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every case, ``repeats`` times each; ``warmup`` untimed calls per case first. A case is
    called with the repeat index (use it as a seed). Repeats are interleaved over the cases."""
    for fn in cases.values():
        for i in range(warmup):
            fn(-1 - i)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn(r)
            times[name].append(time.perf_counter() - start)
    return times


def render_rates(size: int, n: int, repeats: int, seed: int = 0) -> list[float]:
    """Synthetic scenes rendered per second at ``size`` px, one rate per repeat of ``n`` scenes never rendered
    before in this world (so no cache helps), after one untimed warm-up render that pays imports and caches."""
    from fourm_core.sources.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(image_size=size), seed=seed)
    world[10**9]  # warm-up: an index no repeat uses
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            world[r * n + i]
        rates.append(n / (time.perf_counter() - start))
    return rates


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """Spread of ``numerator[i] / denominator[i]`` over repeats (both measured in the same interleaved round)."""
    return spread([a / b for a, b in zip(numerator, denominator, strict=True)], digits=3)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(stem: Path, record: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """``<stem>.json`` (the record) and ``<stem>.md`` (the markdown); returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    md_path.write_text(markdown.rstrip("\n") + "\n")
    return json_path, md_path
