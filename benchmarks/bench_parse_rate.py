"""Parse rate of every sequence target, decoded with and without grammar constraints (issue 18's before/after).

Usage::

    python benchmarks/bench_parse_rate.py --model demo/model/final --store demo/world.zarr [--n 16] [--start 0]

Generates every sequence target the model predicts from the RGB of ``n`` store pictures (default schedule,
temperature 0.5, seed 0), once with ``constrain=False`` and once with ``constrain=True``, and writes the share of
outputs whose serializer parses them, the seconds each pass took and the first output of each target to
``benchmarks/results/<date>-<machine>-parse-rate.{json,md}``. Absolute seconds are this machine's; the parse rates
are the point.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine_record, result_stem


def measure(model: str, store_path: str, n: int, start: int) -> dict[str, Any]:
    from fourm_core.inference.outputs import run_generation
    from fourm_core.inference.pipeline import Pipeline
    from fourm_core.storage.store import AlignedStore

    pipe = Pipeline.from_pretrained(model)
    store = AlignedStore.open(store_path, mode="r")
    keys = [k for k, info in pipe.keys.items() if info.kind.value == "sequence" and info.target]
    names = [pipe.registry.model_keys(pipe.preset)[k][0].name for k in keys]
    batch = [{"rgb": store.read("rgb/raw", i)["rgb"]} for i in range(start, start + n)]
    record: dict[str, Any] = {"model": model, "store": store_path, "samples": [start, start + n], "targets": names}
    for constrain in (False, True):
        began = time.perf_counter()
        results = run_generation(pipe, batch, names, seed=0, temperature=0.5, constrain=constrain)
        label = "constrained" if constrain else "unconstrained"
        record[label] = {
            "seconds": round(time.perf_counter() - began, 1),
            "parse_rate": {m: float(np.mean([r[m].parse_error is None for r in results])) for m in names},
            "first_output": {m: results[0][m].text[:160] for m in names},
        }
    return record


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Parse rate of sequence targets, unconstrained vs grammar-constrained decoding",
        "",
        f"model `{record['model']}`, store `{record['store']}`, "
        f"samples {record['samples'][0]}..{record['samples'][1] - 1} "
        "(RGB in, every sequence target out; temperature 0.5, seed 0)",
        "",
        "| target | unconstrained | constrained |",
        "|---|---|---|",
    ]
    for m in record["targets"]:
        lines.append(
            f"| {m} | {record['unconstrained']['parse_rate'][m]:.3f} | {record['constrained']['parse_rate'][m]:.3f} |"
        )
    lines += [
        "",
        f"seconds for all targets: {record['unconstrained']['seconds']} unconstrained, "
        f"{record['constrained']['seconds']} constrained",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = measure(args.model, args.store, args.n, args.start)
    record["machine"] = machine_record(args.threads)
    stem = result_stem("parse-rate", args.out)
    Path(f"{stem}.json").write_text(json.dumps(record, indent=1))
    Path(f"{stem}.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
