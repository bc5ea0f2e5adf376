"""Training-time reads of a pre-tokenised store: every modality in the form training consumes it.

Run after ``fourm data tokenize STORE``:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_loader.py STORE [--out benchmarks/results/loader.json]

Three datasets over the same block-shuffled order (median of ``--repeats`` passes with the spread):
- tokens only: every modality with a tokens part, in tokens form, one random crop per sample;
- training mix (random crop too): tokens for the image-token and global modalities, raw + tokens for poses and
  instances, raw for pixels, text and the other sequences (what training reads before serialising sequences);
- raw only: every labelled modality raw (the figure issue 3 recorded before tokens existed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def nbytes(value) -> int:
    """Bytes of the arrays (and strings) in one returned sample."""
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, list):
        return sum(nbytes(v) for v in value)
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    return len(value.encode()) if isinstance(value, str) else 8


def rate(dataset, order: list[int]) -> tuple[float, float]:
    """(samples/s, MB/s of returned data) over ``order``."""
    start, total = time.perf_counter(), 0
    for i in order:
        total += nbytes(dataset[i])
    seconds = time.perf_counter() - start
    return len(order) / seconds, total / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from fourm_core.data.loader import BlockShuffleSampler, StoreDataset
    from fourm_core.storage.store import AlignedStore

    store = AlignedStore.open(args.store, mode="r")
    parts = set(store.parts())
    labelled = sorted({p.split("/")[0] for p in parts if p.endswith("/raw") or p.endswith("/tokens")})
    tokens = [m for m in labelled if f"{m}/tokens" in parts]
    mix = {}
    for m in labelled:
        has_raw, has_tokens = f"{m}/raw" in parts, f"{m}/tokens" in parts
        if has_tokens and has_raw and store.layouts(f"{m}/tokens")["tokens"].ragged:
            mix[m] = "raw+tokens"  # per-item tokens go with their items
        elif has_tokens:
            mix[m] = "tokens"
        else:
            mix[m] = "raw"
    raw = [m for m in labelled if f"{m}/raw" in parts]
    n = min(args.samples, store.n_samples)
    order = [i for i in BlockShuffleSampler(store.n_samples, store.block_size, seed=0) if i < n]
    results = {}
    for name, modalities, form, crop in (
        ("tokens only, random crop", tokens, "tokens", "random"),
        ("training mix, random crop", list(mix), mix, "random"),
        ("raw only", raw, "raw", None),
    ):
        runs = [rate(StoreDataset(args.store, modalities, form=form, crop=crop), order) for _ in range(args.repeats)]
        rates = [r[0] for r in runs]
        results[name] = {
            "modalities": len(modalities),
            "median": round(statistics.median(rates), 1),
            "min": round(min(rates), 1),
            "max": round(max(rates), 1),
            "mb_per_s": round(statistics.median(r[1] for r in runs), 2),
        }
        print(
            f"{name}: {len(modalities)} modalities, {results[name]['median']:.0f} samples/s "
            f"({results[name]['min']:.0f}..{results[name]['max']:.0f}), {results[name]['mb_per_s']:.1f} MB/s"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"store": args.store, "samples": n, "datasets": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
