"""Parse rate of every sequence target, decoded with and without grammar constraints (issue 18's before/after).

Usage::

    python benchmarks/bench_parse_rate.py --model demo/model/final --store demo/world.zarr [--n 16] [--start 0] \
        [--held-out 64] [--name parse-rate]

Generates every sequence target the model predicts from the RGB of ``n`` store pictures (default schedule,
temperature 0.5, seed 0), once with ``constrain=False`` and once with ``constrain=True``, and writes the share of
outputs whose serializer parses them, the seconds each pass took and the first output of each target to
``benchmarks/results/<date>-<machine>-<name>.{json,md}``. Absolute seconds are this machine's; the parse rates
are the point.

With ``--held-out N``, also the held-out metrics of the item and box targets (det, SAM instances, poses: whatever
the evaluation families find) on the store's last N scenes, unconstrained and constrained (greedy, as Table 1
decodes): parse rate, recall, precision, COCO box / mask AP with per-item confidences, MPJPE; and the box-prompted
evaluation (the true boxes given; constrained), whose SAM mask AP is the paper's instance row.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from _common import machine_record, result_stem, write_results


def measure(pipe: Any, model: str, store_path: str, n: int, start: int) -> dict[str, Any]:
    from fourm_core.inference.outputs import run_generation
    from fourm_core.storage.store import AlignedStore

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


#: the held-out metrics the table shows, in this order, when a target reports them
METRICS = ("parse_rate", "recall", "precision", "box_ap", "box_ap50", "mask_ap", "mask_ap50", "iou", "mpjpe_mm")


def held_out(pipe: Any, store_path: str, n: int) -> dict[str, Any]:
    """Item / box targets on the last ``n`` scenes, free (unconstrained and constrained) and box-prompted."""
    from fourm_core.evaluation import EvalConfig, evaluate
    from fourm_core.evaluation.prompted import evaluate_prompted
    from fourm_core.serialization_protocols import ItemMatching, LabelledBoxes

    names = []
    for key, info in pipe.keys.items():
        member = pipe.registry.model_keys(pipe.preset)[key][0]
        if info.kind.value == "sequence" and info.target:
            serializer = pipe.registry.serializer(member.name)
            if isinstance(serializer, (ItemMatching, LabelledBoxes)):
                names.append(member.name)
    out: dict[str, Any] = {"samples": n, "targets": names}
    for constrain in (False, True):
        began = time.perf_counter()
        config = EvalConfig(samples=n, inputs=["rgb"], targets=names, constrain=constrain, strict=False)
        got = evaluate(pipe, store_path, config)
        out["constrained" if constrain else "unconstrained"] = {
            "seconds": round(time.perf_counter() - began, 1),
            "scores": {t: {"model": s.model, "bound": s.bound} for t, s in got.items()},
        }
    began = time.perf_counter()
    prompted = evaluate_prompted(pipe, store_path, EvalConfig(samples=n, inputs=["rgb"], targets=names, strict=False))
    out["prompted"] = {"seconds": round(time.perf_counter() - began, 1), "scores": prompted}
    return out


def held_out_markdown(record: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Held-out metrics (last {record['samples']} scenes, RGB in, greedy)",
        "",
        "| target | decoding | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]

    def cells(scores: dict[str, float]) -> str:
        return " | ".join(f"{scores[m]:.3f}" if m in scores else "-" for m in METRICS)

    for target in record["targets"]:
        for label in ("unconstrained", "constrained"):
            scores = record[label]["scores"].get(target)
            if scores is not None:
                lines.append(f"| {target} | {label} | {cells(scores['model'])} |")
        prompted = record["prompted"]["scores"].get(target)
        if prompted is not None:
            lines.append(f"| {target} | box-prompted | {cells(prompted['model'])} |")
        bound = {**(record["constrained"]["scores"].get(target) or {}).get("bound", {})}
        bound.update((prompted or {}).get("bound", {}))
        if bound:
            lines.append(f"| {target} | bound | {cells(bound)} |")
    lines += [
        "",
        "AP: pycocotools, each item ranked by the geometric-mean probability of its sampled ids. Box-prompted: every "
        "true item's box is written into the target sequence and only the item's tokens are decoded (constrained); "
        "its mask AP pastes each decoded mask into its prompt box. Bound: the tokenizer's round trip of the true "
        "items (det: the true boxes written and read back by the serializer). Seconds: "
        f"{record['unconstrained']['seconds']} unconstrained, {record['constrained']['seconds']} constrained, "
        f"{record['prompted']['seconds']} box-prompted.",
    ]
    return lines


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
    if "held_out" in record:
        lines += held_out_markdown(record["held_out"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--held-out", type=int, default=0, help="also score item/box targets on the last N scenes")
    parser.add_argument("--name", default="parse-rate", help="result file name after the date and machine")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from fourm_core.inference.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.model)
    record = measure(pipe, args.model, args.store, args.n, args.start)
    if args.held_out:
        record["held_out"] = held_out(pipe, args.store, args.held_out)
    record["machine"] = machine_record(args.threads)
    text = markdown(record)
    write_results(result_stem(args.name, args.out), record, text)
    print(text)


if __name__ == "__main__":
    main()
