"""The tokenizer bound table: train every learned tokenizer on a synthetic store with the same time budget and
measure reconstructions of held-out samples against the trivial baseline (training mean or majority).

Run:  .venv/bin/python benchmarks/bench_tokenizers.py --n 2048 --seconds 110 --out benchmarks/results/tokenizers.json
(renders and labels a store first unless ``--store`` names one). Writes the JSON report and a markdown table next
to it. Metrics: depth abs-rel / delta1 (after least-squares alignment in log depth), normals mean angle error,
semseg mIoU, edge F1 (1-pixel tolerance), feature-map cosine, global-embedding cosine and kNN agreement, pose joint
error (MPJPE of the average body), mask IoU, RGB PSNR; codebook perplexity and share of codes used.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

#: the headline metric per transform kind, and whether higher is better
HEADLINE = {
    "color": ("psnr", True),
    "robust_depth": ("abs_rel", False),
    "unit_vectors": ("mean_angle_deg", False),
    "classes": ("miou", True),
    "edges": ("f1", True),
    "features": ("cosine", True),
    "embedding": ("cosine", True),
    "vectors": ("mpjpe_mm", False),
    "masks": ("iou", True),
}


def make_store(path: Path, n: int, workers: int) -> None:
    from fourm_core.apps.demo.settings import DEMO_LABEL_OPTIONS as SYNTHETIC_LABEL_OPTIONS
    from fourm_core.labeling.runner import label_store
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.storage.source_writer import create_source_store, write_source

    adapter = SyntheticSource(n, 64, seed=0)
    store = create_source_store(path, adapter, 64, "tiny", 64)
    write_source(store, adapter, workers)
    label_store(path, workers=workers, options=SYNTHETIC_LABEL_OPTIONS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="an existing labelled tiny store (default: render one)")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=110.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--tokenizers", default=None, help="where to save the trained tokenizers (default: temp)")
    parser.add_argument("--out", default="benchmarks/results/tokenizers.json")
    args = parser.parse_args()

    from fourm_core.registry import Registry
    from fourm_core.storage.store import AlignedStore
    from fourm_core.tokenizers.config import TrainConfig
    from fourm_core.tokenizers.workflow import bound_markdown, plan_tokenizers, train_tokenizer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(args.store) if args.store else Path(tmp) / "world.zarr"
        started = time.perf_counter()
        if not args.store:
            make_store(store_path, args.n, args.workers)
        prepare_s = time.perf_counter() - started
        registry = Registry()
        store = AlignedStore.open(store_path, mode="r")
        out_dir = Path(args.tokenizers or Path(tmp) / "tokenizers")
        reports = []
        for plan in plan_tokenizers(registry, args.only, store):
            if plan.skip_reason:
                print(f"skip {plan.name}: {plan.skip_reason}")
                continue
            cfg = TrainConfig(steps=100000, max_seconds=args.seconds)
            report = train_tokenizer(registry, store, plan, out_dir, cfg)
            transform = json.loads((out_dir / plan.name / "config.json").read_text())["config"]["transform"]
            metric, higher = HEADLINE[transform]
            bound, base = report["evaluation"]["bound"][metric], report["evaluation"]["baseline"][metric]
            report["headline"] = {"metric": metric, "bound": bound, "baseline": base, "higher_is_better": higher}
            reports.append(report)
            print(
                f"{plan.name}: {metric} bound {bound:.3f} vs baseline {base:.3f} ({report['training']['steps']} steps)"
            )
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "threads": args.threads},
        "store": {"n": store.n_samples, "image_size": store.image_size, "prepare_seconds": round(prepare_s, 1)},
        "seconds_per_tokenizer": args.seconds,
        "tokenizers": reports,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    out.with_suffix(".md").write_text(bound_markdown(reports))
    print(bound_markdown(reports))


if __name__ == "__main__":
    main()
