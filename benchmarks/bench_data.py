"""Data pipeline throughput: synthetic world renders, source writing, labeling per labeler, store reads.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py --out benchmarks/results/data.json
Absolute times on shared machines are noise; compare ratios within one run. Each figure is the median of
``--repeats`` runs with its spread (min..max).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import render_rates


def _median(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_render(size: int, n: int, repeats: int) -> dict[str, float]:
    """Median, min and max scenes/s at ``size`` px over ``repeats`` runs of ``n`` scenes."""
    return _median(render_rates(size, n, repeats))


def bench_pipeline(n: int, size: int, workers: int) -> dict[str, object]:
    from fourm_core.apps.demo.settings import DEMO_LABEL_OPTIONS as SYNTHETIC_LABEL_OPTIONS
    from fourm_core.labeling.runner import label_store
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import AlignedStore

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        adapter = SyntheticSource(n, size, seed=0)
        store = create_source_store(path, adapter, size, "tiny", 64)
        report = write_source(store, adapter, workers)
        plans = label_store(path, workers=workers, options=SYNTHETIC_LABEL_OPTIONS)
        labels = {p.name: round(p.samples_per_s, 1) for p in plans if p.seconds}
        skipped = {p.name: p.skip_reason for p in plans if p.labeler is None}
        store = AlignedStore.open(path)
        start = time.perf_counter()
        for block in range(store.n_blocks):
            store.read_block("depth/raw", block)
        reads = n / (time.perf_counter() - start)
        from fourm_core.data.loader import BlockShuffleSampler, StoreDataset

        names = [p.name for p in plans if p.labeler]
        dataset = StoreDataset(path, names)
        start = time.perf_counter()
        for i in BlockShuffleSampler(len(dataset), store.block_size, seed=0):
            dataset[i]
        loader_rate = n / (time.perf_counter() - start)
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    return {
        "source_write_samples_per_s": round(report.samples_per_s, 1),
        "label_samples_per_s": labels,
        "skipped": skipped,
        "depth_block_read_samples_per_s": round(reads, 1),
        "loader_all_labelled_samples_per_s": round(loader_rate, 1),
        "store_mb": round(size_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/data.json")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    results = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "render_scenes_per_s": {str(s): bench_render(s, n, args.repeats) for s, n in ((64, 60), (224, 8))},
        "pipeline_tiny": bench_pipeline(args.n, 64, args.workers),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
