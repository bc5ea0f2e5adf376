"""Synthetic world render throughput on ONE core: scenes per second at 64 px (the tiny preset) and 224 px.

Run:  .venv/bin/python benchmarks/bench_synthetic.py --out benchmarks/results/synthetic.json

The tiny preset must render >= 50 scenes/s on one core (the data pipeline renders on the fly). Thread pools are
pinned to one thread before numpy is imported and the process is pinned to one CPU where the OS allows, so the
number means "one core". Each figure is the median over ``--repeats`` runs of fresh scene indices, with the spread
(min..max); absolute numbers on shared machines are noisy, compare runs on one machine.
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _common import render_rates  # noqa: E402

TARGET_64 = 50.0


def _pin_one_core() -> str:
    """Pin this process to a single CPU (Linux); returns what was done, for the report."""
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity); thread pools limited to 1"


def bench(size: int, n: int, repeats: int, seed: int) -> dict[str, float]:
    """Median, min and max scenes/s over ``repeats`` runs of ``n`` distinct scenes each."""
    rates = render_rates(size, n, repeats, seed)
    return {
        "median": round(statistics.median(rates), 2),
        "min": round(min(rates), 2),
        "max": round(max(rates), 2),
        "ms_per_scene": round(1000 / statistics.median(rates), 2),
        "scenes_per_run": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/synthetic.json", help="where to write the JSON result")
    parser.add_argument("--n64", type=int, default=200, help="scenes per run at 64 px")
    parser.add_argument("--n224", type=int, default=20, help="scenes per run at 224 px")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pinning = _pin_one_core()
    results = {size: bench(size, n, args.repeats, args.seed) for size, n in ((64, args.n64), (224, args.n224)) if n > 0}
    report = {
        "scenes_per_s": {str(size): r["median"] for size, r in results.items()},
        "detail": {str(size): r for size, r in results.items()},
        "target_64_scenes_per_s": TARGET_64,
        "meets_target": results.get(64, {"median": 0.0})["median"] >= TARGET_64,
        "repeats": args.repeats,
        "cores": 1,
        "pinning": pinning,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for size, r in results.items():
        spread = f"min {r['min']:.1f}, max {r['max']:.1f}; {r['ms_per_scene']} ms/scene"
        print(f"{size:>4} px: {r['median']:8.1f} scenes/s  ({spread})")
    print(f"target at 64 px: >= {TARGET_64:.0f} scenes/s -> {'met' if report['meets_target'] else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
