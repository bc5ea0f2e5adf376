"""The training loop of ``fourm train`` on DeepSpeed: ZeRO, bf16, accumulation, clipping, exact resume.

DeepSpeed does the distributed parts (gradient all-reduce or ZeRO partitioning, bf16 master weights, clipping,
accumulation boundaries, checkpoint files); this module does what is specific to 4M: the per-position batches of
:class:`~fourm_core.training.data.TrainingData`, AdamW with ml-4m's decay groups, warmup + cosine in tokens,
per-modality losses, useful-token throughput and MFU, validation, the JSON-lines log and the safetensors export.

Exact resume: every random choice of a micro-batch (data, masking, decoder order, drop path) is derived from its
global sample position, so a checkpoint needs only model, optimiser, scheduler and the step (DeepSpeed saves the
first three, the step travels in ``client_state``). Checkpoints are written and chosen by
:mod:`fourm_core.training.checkpoints`: the run's fingerprint is checked before anything is loaded, and nothing in a
run folder is unpickled beyond tensors and plain data. On a machine without CUDA the CPU accelerator and the gloo
backend are used; with CUDA, NCCL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fourm_core.training.checkpoints import (
    CheckpointError,
    SafeLoads,
    save_checkpoint,
    trim_log,
)
from fourm_core.training.config import RunConfig, ScheduleConfig
from fourm_core.training.device import accelerator_peak, describe, init_distributed, resolve_device
from fourm_core.training.node_checkpoints import agreed_checkpoint
from fourm_core.training.warmstart import InitReport, build_network

__all__ = ["TrainResult", "decay_groups", "init_distributed", "steps_for_seconds", "train", "warmup_cosine"]

CHECKPOINTS = "checkpoints"
FINAL = "final"
#: the exported model's sidecar naming its vocabulary, tokenizers and preset
ASSETS_NAME = "fourm.json"
LOG_NAME = "log.jsonl"
#: ``tokenizers: official`` (a fine-tune of a published model on stores tokenised with the official tokenizers)
OFFICIAL_TOKENIZERS = "official"
#: engine fields that change how fast a run goes, not its batches or model: left out of the fingerprint (a resume
#: may change them, and runs from before a field existed keep their fingerprint)
_SPEED_FIELDS = ("threads", "peak_gflops", "device", "loader_workers", "prefetch", "compile", "compile_backend")


@dataclass
class TrainResult:
    """What a run did: steps taken (in total, including before a resume), where its outputs are."""

    steps: int
    resumed_from: int
    out_dir: Path
    final_dir: Path | None
    log_path: Path
    last_losses: dict[str, float] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    #: what ``model.init`` loaded, was new, dropped or re-initialised (``None`` without ``model.init``)
    init: InitReport | None = None


# -- optimiser and schedule ----------------------------------------------------------------------------------------
def tune_malloc() -> bool:
    """Keep large freed blocks for reuse instead of returning them to the kernel (glibc ``mallopt``).

    Every step frees and re-allocates the dense gradients of the embedding tables (tens of MB each); with glibc's
    defaults they are unmapped and mapped again, and the kernel zeroes every page (about 100K page faults per step,
    ~0.1 s of a 1.1 s CPU step in ``benchmarks/bench_train.py``). Same effect as the ``MALLOC_*_`` environment
    variables, but settable from inside the process. Returns False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        ok &= libc.mallopt(m_trim_threshold, 2**31 - 1)
        ok &= libc.mallopt(m_top_pad, 256 * 1024 * 1024)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """ml-4m's AdamW groups: no weight decay on norms and biases; embeddings, mask token and everything else
    decay. Shared parameters (tied modality embeddings) appear once."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if "norm" in name or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Learning-rate factor at step ``s``: linear warmup from 0, then cosine decay to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def schedule_steps(config: RunConfig, world: int) -> tuple[int, int, int]:
    """(total steps, warmup steps, nominal tokens per step). Tokens per step are the full input + target budgets
    of the global batch, ml-4m's convention for ``total_tokens`` / ``warmup_tokens``."""
    global_batch = config.engine.micro_batch_size * config.engine.grad_accum * world
    per_step = (config.budget("input")[1] + config.budget("target")[1]) * global_batch
    s = config.schedule
    total = s.steps if s.steps is not None else max(1, math.ceil(float(s.total_tokens or 0) / per_step))
    if s.warmup_steps is not None:
        warmup = s.warmup_steps
    else:
        warmup = math.ceil(float(s.warmup_tokens or 0) / per_step)
    return total, min(warmup, total), per_step


def deepspeed_config(config: RunConfig) -> dict[str, Any]:
    """The DeepSpeed config dict from a run config (DeepSpeed itself never reads a file here)."""
    e = config.engine
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": e.micro_batch_size,
        "gradient_accumulation_steps": e.grad_accum,
        "zero_optimization": {"stage": e.zero_stage},
        "bf16": {"enabled": e.precision == "bf16"},
        "steps_per_print": 2**31,
        "wall_clock_breakdown": False,
    }
    if e.node_local_checkpoints:  # each node's first process writes the model states into its own folder
        ds["checkpoint"] = {"use_node_local_storage": True}
    if config.optim.clip_grad is not None:
        ds["gradient_clipping"] = config.optim.clip_grad
    return ds


def config_fingerprint(config: RunConfig) -> str:
    """Hash of everything that decides the batches and the model, so a resume refuses a different run. The
    length of the run, logging and checkpointing cadence may change between resumes."""
    data = config.model_dump(mode="json")
    for volatile in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "out_dir", "tokenizers"):
        data.pop(volatile, None)
    data["schedule"] = None
    data["engine"] = {k: v for k, v in data["engine"].items() if k not in _SPEED_FIELDS}
    data["engine"].pop("node_local_checkpoints", None)  # where checkpoints are kept, not what they hold
    if data["model"].get("init_revision") is None:  # absent before it existed: older runs keep their fingerprint
        data["model"].pop("init_revision", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def seed_position(seed: int, position: int) -> None:
    """Seed python's and torch's generators for one micro-batch (decoder modality order, drop path)."""
    value = (seed * 1_000_003 + position) % (2**63)
    random.seed(value)
    torch.manual_seed(value)


# -- the run -------------------------------------------------------------------------------------------------------
class _Logger:
    """JSON lines on rank 0, appended (a resumed run continues the same log)."""

    def __init__(self, path: Path, rank: int) -> None:
        self.path, self.rank = path, rank

    def write(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def train(
    config: RunConfig,
    registry: Any = None,
    *,
    resume: bool = True,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    on_init: Callable[[InitReport, torch.nn.Module], None] | None = None,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Run (or resume) the training described by ``config`` on this process's rank.

    ``progress(step, total, record)`` is called on rank 0 after each logged step. With ``model.init``,
    ``on_init(report, network)`` is called on rank 0 once the network is warm-started, before any step (to print
    the summary, or to look at the starting weights); the report is also the first line of the log. ``announce``
    gets rank 0's start-up lines (device, memory estimate, MFU peak).
    """
    import deepspeed
    import torch.distributed as dist

    from fourm_core.registry import Registry
    from fourm_core.training.data import TrainingData, cast_floats
    from fourm_core.training.flops import train_flops
    from fourm_core.training.memory import estimate_run_memory
    from fourm_core.training.prefetch import StepBatches
    from fourm_core.vocab import TextVocabulary

    e = config.engine
    device = resolve_device(e.device)  # --device cuda without a GPU: one line, before anything
    rank, world = init_distributed(device)
    tune_malloc()
    threads = e.threads or max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    torch.set_num_threads(threads)

    def say(line: str) -> None:  # rank 0's start-up lines: to the caller and to the ``fourm.train`` logger
        if rank == 0:
            logging.getLogger("fourm.train").info(line)
            if announce is not None:
                announce(line)

    say(describe(device, e.device))
    out = Path(config.out_dir)
    ckpt_dir = out / CHECKPOINTS
    fingerprint = config_fingerprint(config)
    # before anything is built or written: a foreign, unsafe or unusable checkpoint ends the run here; every rank
    # resumes from the same step, and out_dir is checked to be shared (or node-local) as the config says
    chosen = agreed_checkpoint(ckpt_dir, fingerprint, node_local=e.node_local_checkpoints, resume=resume)
    start = chosen.step if chosen is not None else 0
    registry = registry if registry is not None else Registry()
    data = TrainingData(config, registry, TextVocabulary.load(config.vocabulary))
    # seeded inside: the same initial weights on every rank; model.init's shared keys loaded (warmstart), or the
    # run refused (another trunk, an uncached hub id offline) before anything is written
    model, init_report = build_network(config, data.keys, registry)
    say(estimate_run_memory(config, model, world).line())
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
        trim_log(out / LOG_NAME, start)  # the steps after the checkpoint run again: no step is logged twice
    dist.barrier()
    logger = _Logger(out / LOG_NAME, rank)
    if init_report is not None and rank == 0:
        if start == 0:  # a resumed log already has it (trim_log keeps step 0)
            logger.write(init_report.record())
        if on_init is not None:
            on_init(init_report, model)
    if e.precision == "bf16":
        model.to(torch.bfloat16)  # buffers too (sin-cos positions, no-bias norm zeros); DeepSpeed casts parameters only
    total_steps, warmup_steps, tokens_per_step = schedule_steps(config, world)
    global_batch = e.micro_batch_size * e.grad_accum * world
    lr = config.optim.lr or config.optim.blr * global_batch / 256
    optimizer = torch.optim.AdamW(
        decay_groups(model, config.optim.weight_decay),
        lr=lr,
        betas=config.optim.betas,
        eps=config.optim.eps,
        fused=True,  # one kernel per group: the per-tensor loop cost 0.35-0.57 s of a 1.1 s CPU step (bench_train)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(warmup_steps, total_steps, config.optim.min_lr / lr)
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(config),
        dist_init_required=False,
    )
    if e.compile:  # in place (``module.compile``): state-dict keys, checkpoints and the export are unchanged
        engine.compile(backend=e.compile_backend)
    dtype = torch.bfloat16 if e.precision == "bf16" else torch.float32
    SafeLoads.install(engine)
    if chosen is not None:
        _, client = engine.load_checkpoint(str(ckpt_dir), chosen.tag)
        if client is None or client.get("fingerprint") != fingerprint or client.get("step") != start:
            raise CheckpointError(f"{chosen.path}: DeepSpeed's client state disagrees with the checkpoint's manifest")
    result = TrainResult(start, start, out, None, out / LOG_NAME, init=init_report)
    peak_info = accelerator_peak(device, dtype, threads=threads, configured=e.peak_gflops)
    peak = peak_info.gflops
    say(peak_info.line())
    validation = data.validation_batches(e.micro_batch_size) if config.eval_every else []

    def evaluate(step: int) -> None:
        engine.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        with torch.no_grad():
            for i, batch in enumerate(validation):
                seed_position(config.seed + 1, i)
                batch = cast_floats(batch, dtype).to(engine.device)
                _, losses = engine(
                    batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens, loss_type=config.loss_type
                )
                for k, v in losses.items():
                    if _has_targets(batch, k):
                        sums[k] = sums.get(k, 0.0) + float(v)
                        counts[k] = counts.get(k, 0) + 1
        engine.train()
        per_key = {k: sums[k] / counts[k] for k in sorted(sums)}
        record = {
            "kind": "val",
            "step": step,
            "tokens": step * tokens_per_step,
            "loss": sum(per_key.values()) / max(1, len(per_key)),
            "losses": per_key,
        }
        result.validation.append(record)
        logger.write(record)

    # worker processes (engine.loader_workers) start building the first micro-batches now, during evaluate(0)
    batches = StepBatches(data, config, start, total_steps, rank=rank, world=world, device=engine.device, dtype=dtype)
    if validation and start == 0:
        evaluate(0)
    engine.train()
    window: dict[str, Any] = _new_window()
    peak_warned = False
    for step in range(start, total_steps):
        t0 = time.perf_counter()
        window["lr"] = engine.get_lr()[0]  # the rate this step uses (the scheduler moves on after it)
        for micro in range(e.grad_accum):
            loaded = next(batches)  # the micro-batch of sample_position(step, micro, rank, ...), on the device
            batch, n_in, n_tgt = loaded.batch, loaded.tokens_in, loaded.tokens_tgt
            seed_position(config.seed, loaded.position)
            loss, losses = engine(
                batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens, loss_type=config.loss_type
            )
            engine.backward(loss)
            if micro == e.grad_accum - 1 and e.zero_stage == 0:  # DeepSpeed reports no norm without ZeRO
                window["grad_norm"] = _grad_norm(engine.module)
            engine.step()
            window["loss"] += float(loss.detach())
            window["micro"] += 1
            window["tokens_in"] += n_in
            window["tokens_tgt"] += n_tgt
            window["flops"] += train_flops(engine.module, batch)
            for k, v in losses.items():
                if _has_targets(batch, k):
                    window["sums"][k] = window["sums"].get(k, 0.0) + float(v.detach())
                    window["counts"][k] = window["counts"].get(k, 0) + 1
        window["seconds"] += time.perf_counter() - t0
        window["steps"] += 1
        done = step + 1
        result.steps = done
        if done % config.log_every == 0 or done == total_steps:
            record = _log_record(window, done, total_steps, tokens_per_step, engine, peak, world, e.micro_batch_size)
            if (record["mfu"] or 0.0) > 1.0 and not peak_warned:  # the peak is wrong, not the run: say which
                peak_warned = True
                say(
                    f"MFU {record['mfu']:.0%} at step {done}: the peak it is divided by ({peak_info.line()}) is below "
                    "what this run reaches (a peak measured at start-up on a busy CPU is too low); set "
                    "engine.peak_gflops"
                )
            logger.write(record)
            result.last_losses = record["losses"]
            if progress is not None and rank == 0:
                progress(done, total_steps, record)
            window = _new_window()
        if config.eval_every and done % config.eval_every == 0 and done != total_steps:
            evaluate(done)
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done != total_steps:
            save_checkpoint(engine, ckpt_dir, done, fingerprint, rank, config.keep_checkpoints, dist.barrier)
    batches.close()
    if validation:
        evaluate(total_steps)
    result.final_dir = _export(engine, out / FINAL, rank, e.zero_stage, _assets(config))
    save_checkpoint(engine, ckpt_dir, total_steps, fingerprint, rank, config.keep_checkpoints, dist.barrier)
    return result


def _grad_norm(module: torch.nn.Module) -> float:
    """Global L2 norm of the gradients before clipping (what ml-4m logs)."""
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def steps_for_seconds(config: RunConfig, seconds: float, registry: Any = None, probe_steps: int = 4) -> int:
    """How many steps of ``config`` fit in ``seconds``: a few steps are run in ``<out_dir>/timing`` (no evaluation
    or checkpoints) and timed from their log line, so start-up and the peak measurement are not counted; 10% is
    kept for the evaluations of the real run."""
    timing = config.model_copy(
        update={
            "out_dir": str(Path(config.out_dir) / "timing"),
            "schedule": ScheduleConfig(steps=probe_steps),
            "eval_every": None,
            "checkpoint_every": None,
        }
    )
    train(timing, registry, resume=False)
    lines = (Path(timing.out_dir) / LOG_NAME).read_text().splitlines()
    per_step = float(json.loads(lines[-1])["seconds_per_step"])
    return max(1, int(0.9 * seconds / per_step))


def _has_targets(batch: Any, key: str) -> bool:
    return bool((~batch.mod_dict[key]["target_mask"]).any())


def _new_window() -> dict[str, Any]:
    return {
        "loss": 0.0,
        "micro": 0,
        "tokens_in": 0,
        "tokens_tgt": 0,
        "flops": 0.0,
        "seconds": 0.0,
        "steps": 0,
        "lr": None,
        "sums": {},
        "counts": {},
    }


def _log_record(
    w: dict[str, Any],
    step: int,
    total: int,
    tokens_per_step: int,
    engine: Any,
    peak_gflops: float,
    world: int,
    micro_batch: int,
) -> dict[str, Any]:
    """One training log line, averaged over the micro-batches since the last one and summed over ranks."""
    import torch.distributed as dist

    values = [w["loss"], w["micro"], w["tokens_in"], w["tokens_tgt"], w["flops"]]
    t = torch.tensor(values, dtype=torch.float64, device=engine.device)  # NCCL reduces device tensors only
    dist.all_reduce(t)
    loss, micro, tokens_in, tokens_tgt, flops = t.cpu().tolist()
    seconds = w["seconds"]
    grad_norm = engine.get_global_grad_norm()
    grad_norm = w.get("grad_norm") if grad_norm is None else grad_norm
    budget = tokens_per_step / (micro_batch * world * max(1, engine.gradient_accumulation_steps()))
    return {
        "kind": "train",
        "step": step,
        "of": total,
        "tokens": step * tokens_per_step,
        "lr": w["lr"],
        "loss": loss / max(1.0, micro),
        "losses": {k: w["sums"][k] / w["counts"][k] for k in sorted(w["sums"])},
        "grad_norm": None if grad_norm is None else float(grad_norm),
        "useful_tokens_per_s": (tokens_in + tokens_tgt) / seconds if seconds else None,
        "fill": (tokens_in + tokens_tgt) / (micro * micro_batch * budget) if micro else None,
        "mfu": flops / seconds / (peak_gflops * 1e9 * world) if seconds else None,
        "seconds_per_step": seconds / max(1, w["steps"]),
    }


def _assets(config: RunConfig) -> dict[str, Any]:
    """What generation needs beside the weights: the text vocabulary, the tokenizers and the preset, as absolute
    paths (the run config's paths are relative to where training ran)."""

    def absolute(path: str | None) -> str | None:
        if path == OFFICIAL_TOKENIZERS:  # not a path: each key's official tokenizer (resolved at generation)
            return path
        return str(Path(path).resolve()) if path else None

    return {
        "vocabulary": absolute(config.vocabulary),
        "tokenizers": absolute(config.tokenizers),
        "preset": config.model.preset,
    }


def _export(engine: Any, directory: Path, rank: int, zero_stage: int, assets: dict[str, Any]) -> Path:
    """The trained weights as ``model.safetensors`` + ``config.json`` in fp32 (ZeRO-3 parameters gathered), and
    ``fourm.json`` with the assets generation needs (:func:`_assets`)."""
    import deepspeed
    import torch.distributed as dist

    module = engine.module
    if zero_stage == 3:
        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            if rank == 0:
                _save_fp32(module, directory)
    elif rank == 0:
        _save_fp32(module, directory)
    if rank == 0:
        (directory / ASSETS_NAME).write_text(json.dumps(assets, indent=2) + "\n")
    dist.barrier()
    return directory


def _save_fp32(module: Any, directory: Path) -> None:
    dtype = next(module.parameters()).dtype
    module.float()
    module.save_pretrained(directory)
    module.to(dtype)
