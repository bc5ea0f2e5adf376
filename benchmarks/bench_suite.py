"""The performance suite in one command: render, pseudo-labeling, loader, masking, train step, generation and
retrieval, each a median over repeats with its spread, written as ``benchmarks/results/<date>-<machine>.json`` and a
markdown table beside it::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_suite.py [--threads 1] [--repeats 5] [--quick]

Each stage reuses the function its own benchmark script times (``bench_data``, ``bench_masking``, ``bench_train``,
``bench_generate``), at a size that keeps the whole suite to a few minutes on 2 cores; those scripts measure their
stage in depth. Comparisons are ratios taken in the same run (KV cache against recomputation, guidance against
none, MFU against the matmul peak measured here), because absolute times on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import RESULTS_DIR, machine_record, machine_tag, markdown_table, spread, write_results  # noqa: E402

__all__ = ["main"]


def _repeat(fn: Callable[[int], float], repeats: int) -> list[float]:
    return [fn(r) for r in range(repeats)]


def render_stage(n: int, repeats: int) -> dict[str, Any]:
    """Synthetic scenes rendered per second at 64 px (``bench_data.bench_render``)."""
    from bench_data import bench_render

    rates = _repeat(lambda r: bench_render(64, n, 1)["median"], repeats)
    return {"unit": "scenes/s", "scenes": n, "rate": spread(rates, 1)}


def store_stages(n: int, repeats: int, workers: int) -> dict[str, dict[str, Any]]:
    """Per repeat a fresh store of ``n`` scenes: writing the source, pseudo-labeling every modality with a labeler,
    and one block-shuffled pass of the loader over every labelled modality."""
    from fourm_core.apps.demo.settings import DEMO_LABEL_OPTIONS as SYNTHETIC_LABEL_OPTIONS
    from fourm_core.data.loader import BlockShuffleSampler, StoreDataset
    from fourm_core.labeling.runner import label_store
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.storage.source_writer import create_source_store, write_source

    write, label, load = [], [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "suite.zarr"
            adapter = SyntheticSource(n, 64, seed=r)
            start = time.perf_counter()
            write_source(create_source_store(path, adapter, 64, "tiny", 16), adapter, workers)
            write.append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            plans = label_store(path, workers=workers, options=SYNTHETIC_LABEL_OPTIONS)
            label.append(n / (time.perf_counter() - start))
            dataset = StoreDataset(path, [p.name for p in plans if p.labeler])
            start = time.perf_counter()
            for i in BlockShuffleSampler(len(dataset), 16, seed=r):
                dataset[i]
            load.append(n / (time.perf_counter() - start))
    labelled = sum(1 for p in plans if p.labeler)
    return {
        "source write": {"unit": "scenes/s", "scenes": n, "rate": spread(write, 1)},
        "pseudo-labeling": {"unit": f"scenes/s, all {labelled} labelers", "scenes": n, "rate": spread(label, 2)},
        "loader": {"unit": f"samples/s, {labelled} raw modalities", "scenes": n, "rate": spread(load, 1)},
    }


def masking_stage(samples: int, repeats: int) -> dict[str, Any]:
    """4M-21 maskings per second with the official mixture and 256/256 budgets (``bench_masking``)."""
    from bench_masking import make_samples, rate, setup

    from fourm_core.data.masking import FourMMasker

    layouts, mixture, _ = setup()
    pool = make_samples(layouts, 256)
    masker = FourMMasker(layouts, mixture, seed=0)
    rate(masker, pool, min(100, samples), False)  # warm-up
    rates = _repeat(lambda r: rate(masker, pool, samples, False), repeats)
    return {"unit": "samples/s", "rate": spread(rates, 1)}


def train_stage(threads: int, steps: int, config: str) -> dict[str, Any]:
    """Train steps of ``bench_train`` config ``config`` (median, min, max over ``steps``) and the MFU against the
    matmul peak measured in the same run."""
    from bench_train import run_config

    from fourm_core.training.flops import measure_matmul_peak

    peak = measure_matmul_peak(threads)
    r = run_config(config, threads, steps, warmup=2, optimizer="fused")
    return {
        "unit": "s/step",
        "config": r["label"],
        "step_s": {"median": r["step_s_median"], "min": r["step_s_min"], "max": r["step_s_max"], "n": steps},
        "useful_tokens_per_s": r["tokens_per_s"],
        "gflops": r["gflops"],
        "peak_gflops": round(peak, 1),
        "mfu": round(r["gflops"] / peak, 3),
    }


def generation_stage(threads: int, repeats: int, quick: bool) -> dict[str, Any]:
    """An untrained demo-size model (latency does not depend on trained weights when lengths are forced):
    MaskGIT, ROAR, a cached autoregressive caption, the KV-cache speed-up and the guidance cost
    (``bench_generate``)."""
    import bench_generate

    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "--threads",
            str(threads),
            "--repeats",
            str(repeats),
            "--batch-sizes",
            "1",
            "--out-dir",
            tmp,
            "--steps",
            "2" if quick else "8",
            "--seq-tokens",
            "4" if quick else "32",
            "--lengths",
            "4" if quick else "32",
        ]
        record = bench_generate.main(argv)
    targets = {t["case"]: t for t in record["targets"]}
    kv = record["kv_cache"][0]
    cfg = record["cfg"][0] if record["cfg"] else None
    return {
        "unit": "s per generation (batch 1)",
        "cases": {
            case: {"latency_s": t["latency_s"], "tokens_per_s": t["tokens_per_s"]} for case, t in targets.items()
        },
        "kv_cache_speedup": {"length": kv["length"], **kv["speedup"]},
        "guidance_cost": cfg["ratio"] if cfg else None,
    }


def retrieval_stage(n: int, dim: int, repeats: int) -> dict[str, Any]:
    """A usearch cosine index over ``n`` random ``dim``-d vectors: build time and one-query latency."""
    import numpy as np

    from fourm_core.inference.retrieval import EmbeddingIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    builds, queries = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        index = EmbeddingIndex(dim).build(vectors, np.arange(n))
        builds.append(time.perf_counter() - start)
        query = rng.standard_normal(dim).astype(np.float32)
        start = time.perf_counter()
        for _ in range(20):
            index.search(query, 5)
        queries.append((time.perf_counter() - start) / 20 * 1000)
    return {
        "unit": "build s / query ms",
        "vectors": n,
        "dim": dim,
        "build_s": spread(builds),
        "query_ms": spread(queries, 3),
    }


def _row(name: str, unit: str, s: dict[str, Any]) -> list[Any]:
    iqr = f"{s['q1']}..{s['q3']}" if "q1" in s else "-"
    return [name, unit, s["median"], f"{s['min']}..{s['max']}", iqr, s["n"]]


def to_markdown(record: dict[str, Any]) -> str:
    st = record["stages"]
    rows = [_row("render (64 px)", st["render"]["unit"], st["render"]["rate"])]
    rows += [_row(k, st[k]["unit"], st[k]["rate"]) for k in ("source write", "pseudo-labeling", "loader", "masking")]
    train = st["train step"]
    rows.append(_row(f"train step ({train['config']})", "s/step", train["step_s"]))
    for case, c in st["generation"]["cases"].items():
        rows.append(_row(f"generation: {case}", "s", c["latency_s"]))
    rows.append(_row("retrieval: index build", "s", st["retrieval"]["build_s"]))
    rows.append(_row("retrieval: one query", "ms", st["retrieval"]["query_ms"]))
    gen = st["generation"]
    ratios = [
        ["MFU of the train step", f"{train['mfu']:.0%} ({train['gflops']} of {train['peak_gflops']} GFLOP/s)"],
        ["useful tokens/s in training", train["useful_tokens_per_s"]],
        [f"KV cache speed-up ({gen['kv_cache_speedup']['length']} tokens)", gen["kv_cache_speedup"]["median"]],
    ]
    if gen["guidance_cost"]:
        ratios.append(["guidance cost (scale 3 / scale 1)", gen["guidance_cost"]["median"]])
    m = record["machine"]
    return (
        f"# Performance suite ({record['date']}, {m['arch']}, {m['cpus']} cores, {m['threads']} threads, load "
        f"{m['load_average_1min_at_start']} at start)\n\n`{record['command']}`\n\n"
        + markdown_table(["stage", "unit", "median", "min..max", "IQR", "n"], rows)
        + "\n\nRatios measured in the same run:\n\n"
        + markdown_table(["comparison", "value"], ratios)
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not a measurement)")
    parser.add_argument("--out-dir", default=None, help=f"default {RESULTS_DIR}")
    args = parser.parse_args(argv)
    import datetime as dt

    import torch

    torch.set_num_threads(args.threads)
    q = args.quick
    started = time.perf_counter()
    stages: dict[str, Any] = {"render": render_stage(4 if q else 32, args.repeats)}
    stages.update(store_stages(8 if q else 32, args.repeats, workers=1))
    stages["masking"] = masking_stage(50 if q else 1000, args.repeats)
    stages["train step"] = train_stage(args.threads, 2 if q else 8, "a")
    stages["generation"] = generation_stage(args.threads, args.repeats, q)
    stages["retrieval"] = retrieval_stage(256 if q else 2048, 768, args.repeats)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    record = {
        "benchmark": "suite",
        "date": date,
        "command": "benchmarks/bench_suite.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_record(args.threads),
        "quick": q,
        "repeats": args.repeats,
        "seconds": round(time.perf_counter() - started, 1),
        "stages": stages,
    }
    stem = Path(args.out_dir or RESULTS_DIR) / f"{date}-{machine_tag()}"
    json_path, md_path = write_results(stem, record, to_markdown(record))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path} in {record['seconds']} s")
    return record


if __name__ == "__main__":
    main()
