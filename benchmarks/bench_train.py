"""FourMNetwork training-step throughput and MFU on this CPU (plain torch, fp32, forward + backward + AdamW step).

    .venv/bin/python benchmarks/bench_train.py [--threads 2] [--out benchmarks/results/DATE-x86_64-2core-train.json]

MFU = model FLOPs/s (``fourm_core.training.flops``: matmuls incl. attention, logits of real targets only, training
= 3x forward) divided by the measured matmul peak (best median GFLOP/s of square fp32 matmuls on the same threads).
Batches are built as training builds them: random contents per model key of the ``tiny`` preset, masked by
``FourMMasker`` with every key as input and target, collated to fixed 128 / 128 token budgets. Each config runs in
its own process so its peak RSS (``VmHWM``) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PRESET = "tiny"


def _config(label: str, batch: int, **model: int) -> dict[str, Any]:
    """One timed configuration: the ``tiny`` size with ``model`` overriding it, the 4M-21 recipe, ``batch`` samples
    and 128 encoder + 128 decoder tokens (the budgets stay fixed so configurations differ by network shape only)."""
    return {"label": label, "model": model, "recipe": "swiglu_nobias", "batch": batch, "tokens": (128, 128)}


#: name -> label, model overrides on top of the ``tiny`` size, recipe, batch size, (encoder, decoder) token budgets
CONFIGS: dict[str, dict[str, Any]] = {
    "a": _config("dim 256, 4+4 blocks, 4 heads", 16, dim=256, encoder_depth=4, decoder_depth=4, num_heads=4),
    "b": _config("tiny (384, 6+6, 6 heads)", 16),
    "c": _config("B-shaped 768, 2+2 blocks, 12 heads", 8, dim=768, encoder_depth=2, decoder_depth=2, num_heads=12),
}


#: glibc malloc settings for the child processes: serve blocks up to 32 MB (the most glibc allows; a 30000 x 256
#: fp32 embedding gradient is 30.7 MB) from the heap and never trim it, so they are reused rather than mmap-ed,
#: page-faulted and zeroed by the kernel anew every step.
MALLOC_TUNED = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(8 * 1024**3),
    "MALLOC_TOP_PAD_": str(256 * 1024 * 1024),
}


def vm_hwm_mb() -> float:
    """Peak resident set size of this process in MB (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_batches(batch_size: int, n_enc: int, n_dec: int, count: int, seed: int = 0) -> tuple[dict, list]:
    """(key table, ``count`` collated batches) over the ``tiny`` preset's model keys."""
    from fourm_core.data.collate import Collator
    from fourm_core.data.masking import (
        FourMMasker,
        KeyAlphas,
        MaskingMixture,
        MaskingStrategy,
        TokenRange,
    )
    from fourm_core.keys import KeyTable
    from fourm_core.registry import Registry
    from fourm_core.testing.contents import random_contents

    registry = Registry()
    info = KeyTable.from_registry(registry, PRESET)
    mixture = MaskingMixture(
        strategies=[MaskingStrategy(alphas={k: KeyAlphas(input_alpha=1.0, target_alpha=1.0) for k in info})],
        input_tokens=TokenRange(low=n_enc, high=n_enc),
        target_tokens=TokenRange(low=n_dec, high=n_dec),
    )
    masker = FourMMasker(info, mixture, seed=seed)
    collator = Collator(info, num_encoder_tokens=n_enc, num_decoder_tokens=n_dec)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        samples = [random_contents(info, rng, min_sequence=None) for _ in range(batch_size)]
        masks = [masker(collator.masking_sample(s)) for s in samples]
        batches.append(collator(samples, masks))
    return info, batches


def useful_tokens(model: torch.nn.Module, batch: Any) -> int:
    """Visible encoder inputs (capped at the budget) + real decoder targets (as the FLOP count takes them)."""
    from fourm_core.training.flops import target_tokens_per_key

    n_in = torch.zeros(batch.batch_size, dtype=torch.long)
    for key, d in batch.mod_dict.items():
        if key in model.encoder_embeddings:
            n_in += (~d["input_mask"]).sum(dim=1)
    n_in = int(n_in.clamp(max=batch.num_encoder_tokens).sum())
    return n_in + round(sum(target_tokens_per_key(model, batch).values()))


def run_config(name: str, threads: int, steps: int, warmup: int, optimizer: str, seed: int = 0) -> dict[str, Any]:
    """Time ``steps`` train steps of config ``name`` after ``warmup`` (this process only)."""
    from fourm_core.model.network import FourMNetwork, fourm_config
    from fourm_core.training.flops import batch_forward_flops

    torch.set_num_threads(threads)
    cfg = CONFIGS[name]
    n_enc, n_dec = cfg["tokens"]
    info, batches = build_batches(cfg["batch"], n_enc, n_dec, count=4, seed=seed)
    rss0 = vm_rss_mb()
    torch.manual_seed(seed)
    model = FourMNetwork(fourm_config(info, PRESET, cfg["recipe"], **cfg["model"])).train()
    # fused: one in-place kernel over all parameters; torch's CPU default is the per-tensor loop, whose
    # temporaries (sqrt, div) over ~150M embedding/head parameters cost as much as the forward on this CPU
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=optimizer == "fused")
    flops = [3.0 * batch_forward_flops(model, b).total for b in batches]
    useful = [useful_tokens(model, b) for b in batches]
    times: list[float] = []
    for i in range(warmup + steps):
        b = batches[i % len(batches)]
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = model(b.mod_dict, b.num_encoder_tokens, b.num_decoder_tokens)
        loss.backward()
        opt.step()
        seconds = time.perf_counter() - start
        if not torch.isfinite(loss):
            raise RuntimeError(f"config {name}: non-finite loss")
        if i >= warmup:
            times.append(seconds)
    idx = [i % len(batches) for i in range(warmup, warmup + steps)]
    step_flops = statistics.mean(flops[i] for i in idx)
    step_tokens = statistics.mean(useful[i] for i in idx)
    median = statistics.median(times)
    params = sum(p.numel() for p in model.parameters())
    return {
        "config": name,
        "label": cfg["label"],
        "recipe": cfg["recipe"],
        "batch": cfg["batch"],
        "encoder_tokens": n_enc,
        "decoder_tokens": n_dec,
        "params_m": round(params / 1e6, 2),
        "steps": steps,
        "optimizer": f"AdamW ({optimizer})",
        "step_s_median": round(median, 4),
        "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4),
        "useful_tokens_per_step": step_tokens,
        "useful_fill": round(step_tokens / (cfg["batch"] * (n_enc + n_dec)), 3),
        "tokens_per_s": round(step_tokens / median, 1),
        "train_gflop_per_step": round(step_flops / 1e9, 3),
        "gflops": round(step_flops / median / 1e9, 2),
        "peak_rss_mb": round(vm_hwm_mb(), 1),
        "rss_delta_mb": round(vm_hwm_mb() - rss0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="a,b,c", help="comma-separated names of CONFIGS")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sizes", default="512,1024,2048", help="square matmul sizes for the peak")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 matmul peak")
    parser.add_argument("--optimizer", choices=("fused", "default"), default="fused", help="AdamW implementation")
    parser.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: glibc keeps freed blocks up to 32 MB in its heap instead of unmapping them, so the per-step "
        "gradient and activation buffers are not page-faulted in again every step",
    )
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--out", default="benchmarks/results/2026-11-29-x86_64-2core-train.json")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)  # child mode: one config, JSON on stdout
    args = parser.parse_args()

    if args.single:
        print(json.dumps(run_config(args.single, args.threads, args.steps, args.warmup, args.optimizer)))
        return

    from fourm_core.training.flops import matmul_gflops

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    peak: dict[str, dict[str, float]] = {"fp32": {str(s): round(matmul_gflops(s), 1) for s in sizes}}
    if not args.no_bf16:
        peak["bf16"] = {str(s): round(matmul_gflops(s, torch.bfloat16), 1) for s in sizes}
    best = {k: max(v.values()) for k, v in peak.items()}
    print(f"matmul peak ({args.threads} threads): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in best.items()))

    results = []
    for name in args.configs.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--single",
            name,
            "--threads",
            str(args.threads),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--optimizer",
            args.optimizer,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
        if args.malloc == "tuned":
            env.update(MALLOC_TUNED)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["mfu"] = round(r["gflops"] / best["fp32"], 4)
        results.append(r)
        print(f"config {name}: {r['step_s_median']:.3f} s/step, {r['gflops']:.1f} GFLOP/s, MFU {r['mfu']:.1%}")

    print()
    print(
        "| config | params | batch | step s (min..max) | useful tok/s | fill | GFLOP/step | GFLOP/s | MFU "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['config']}: {r['label']} | {r['params_m']}M | {r['batch']} | {r['step_s_median']:.3f} "
            f"({r['step_s_min']:.3f}..{r['step_s_max']:.3f}) | {r['tokens_per_s']:.0f} | {r['useful_fill']:.2f} | "
            f"{r['train_gflop_per_step']:.1f} | {r['gflops']:.1f} | {r['mfu']:.1%} | {r['peak_rss_mb']:.0f} |"
        )
    if args.out:
        record = {
            "machine": {
                "arch": platform.machine(),
                "cpus": os.cpu_count(),
                "threads": args.threads,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "note": args.note,
            "optimizer": args.optimizer,
            "malloc": MALLOC_TUNED if args.malloc == "tuned" else "default",
            "matmul_gflops": peak,
            "peak_gflops": best,
            "convention": "fourm_core.training.flops: 2mnk matmuls incl. attention, real-target logits, train = 3x fwd",
            "configs": results,
        }
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
