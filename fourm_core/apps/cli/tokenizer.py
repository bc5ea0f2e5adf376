"""``fourm tokenizer train / eval / list`` (``--official``: the official ml-4m ones) and ``fourm data tokenize``."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fourm_core.apps.cli.data import progress_bar, work_table
from fourm_core.apps.cli.errors import (
    check_modality_names,
    existing_dir,
    non_negative_int,
    positive_float,
    positive_int,
)
from fourm_core.errors import UsageError, read_json
from fourm_core.storage.shards import SHARD_HELP, shard_argument

DEFAULT_DIR = "tokenizers"
DEVICE_HELP = "where the tokenizers run: cuda when a GPU is visible (auto), cpu, or cuda (an error without a GPU)"
DTYPE_HELP = "precision: fp32, or bf16 (autocast; weights stay fp32)"


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` as every tokenizer command spells them (see :mod:`fourm_core.devices`)."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help=DTYPE_HELP)


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in metrics.items())


def bound_table(reports: list[dict[str, Any]], title: str = "tokenizer bounds (held-out samples)") -> Table:
    """One row per tokenizer: its bound metrics next to the trivial baseline, and codebook usage."""
    table = Table(title=title)
    for col in ("tokenizer", "family", "steps", "s", "bound", "baseline (mean)", "perplexity", "codes used"):
        table.add_column(col)
    for r in reports:
        ev, tr = r["evaluation"], r.get("training", {})
        bound = _fmt(ev["bound"]) + (f"  diffusion: {_fmt(ev['diffusion'])}" if "diffusion" in ev else "")
        table.add_row(
            r["name"],
            r["family"],
            str(tr.get("steps", "-")),
            str(tr.get("seconds", "-")),
            bound,
            _fmt(ev["baseline"]),
            f"{ev['usage']['perplexity']:.1f}",
            f"{ev['usage']['codes_used']:.0%}",
        )
    return table


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    """Train tokenizers on a store, one after the other, each with a progress bar, then print the bound table."""
    import torch

    from fourm_core.devices import Placement
    from fourm_core.registry import Registry
    from fourm_core.storage.store import AlignedStore
    from fourm_core.tokenizers.config import TrainConfig
    from fourm_core.tokenizers.workflow import plan_tokenizers, train_tokenizer

    if not args.all and not args.names:
        raise UsageError("fourm tokenizer train: name a modality or tokenizer, or pass --all")
    place = Placement.resolve(args.device, args.dtype)  # --device cuda without a GPU: one line, before any loading
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = Registry()
    store = AlignedStore.open(args.store, mode="r")
    cfg = TrainConfig(
        steps=args.steps, max_seconds=args.seconds, batch_size=args.batch_size, seed=args.seed, lr=args.lr
    )
    reports = []
    console.print(place.describe(), highlight=False)
    for plan in plan_tokenizers(registry, [] if args.all else args.names, store):
        if plan.skip_reason:
            console.print(f"[yellow]skip[/yellow] {plan.name}: {escape(plan.skip_reason)}", highlight=False)
            continue
        with Progress(
            TextColumn(f"{plan.name} ({plan.family})"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[loss]}"),
            console=console,
        ) as progress:
            task = progress.add_task(plan.name, total=cfg.steps, loss="")

            def on_step(step: int, losses: dict[str, float], task: Any = task, progress: Progress = progress) -> None:
                if step % 10 == 0 or step == 1:
                    progress.update(task, completed=step, loss=_fmt(losses))

            report = train_tokenizer(registry, store, plan, args.out, cfg, on_step, args.device, args.dtype)
            progress.update(task, completed=report["training"]["steps"])
        reports.append(report)
        console.print(f"  saved {Path(args.out) / plan.name}  bound: {_fmt(report['evaluation']['bound'])}")
    if reports:
        console.print(bound_table(reports))
    return 0


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    """Re-measure a trained tokenizer on a store and write the comparison picture."""
    from fourm_core.registry import Registry
    from fourm_core.storage.store import AlignedStore
    from fourm_core.tokenizers.workflow import eval_tokenizer

    png = args.png or str(Path(args.tokenizers) / f"{args.name}-eval.png")
    result = eval_tokenizer(Registry(), AlignedStore.open(args.store, mode="r"), args.name, args.tokenizers, png)
    if args.json:
        console.print_json(json.dumps(result, default=float))
    else:
        console.print(f"bound    {_fmt(result['bound'])}")
        if "diffusion" in result:
            console.print(f"diffusion {_fmt(result['diffusion'])}")
        console.print(f"baseline {_fmt(result['baseline'])}")
        console.print(f"usage    {_fmt(result['usage'])}")
        if result.get("png"):
            console.print(f"picture  {result['png']}")
    return 0


def official_table(rows: list[dict[str, Any]]) -> Table:
    """The official ml-4m assets the installed plugins declare, one row per modality."""
    repos = {r["hub_id"] for r in rows if r["hub_id"]}
    cached = {r["hub_id"] for r in rows if r["hub_id"] and r["cached"] == "yes"}
    table = Table(title=f"official ml-4m assets ({len(repos)} tokenizer repos, {len(cached)} in the local hub cache)")
    for col in ("modality", "model key", "tokenizer", "normalisation", "tokens", "resolution", "cached"):
        table.add_column(col)
    for r in rows:
        tokenizer = r["hub_id"] or (f"text: {r['text_tokenizer']}" if r["text_tokenizer"] else r["encoder"] or "-")
        if r["hub_id"] and r["text_tokenizer"]:
            tokenizer += f", text: {r['text_tokenizer']}"
        normalisation = r["normalisation"] + (f" (teacher: {r['teacher_input']})" if r["teacher_input"] else "")
        table.add_row(
            r["modality"],
            escape(r["model_key"]),
            escape(tokenizer),
            normalisation,
            r["tokens"],
            r["resolution"],
            r["cached"] or "-",
        )
    return table


def cmd_list_official(args: argparse.Namespace, console: Console) -> int:
    """The official tokenizers every installed plugin declares, and which of them the local hub cache holds."""
    from fourm_core.registry import Registry
    from fourm_core.tokenizers.official.resolve import official_rows

    rows = official_rows(Registry())
    if args.json:
        console.print_json(json.dumps(rows))
        return 0
    console.print(official_table(rows))
    missing = sorted({r["hub_id"] for r in rows if r["hub_id"] and r["cached"] != "yes"})
    if missing:
        console.print(
            f"fetch with: hf download <repo> --include '*.json' '*.safetensors' ({len(missing)} not cached)",
            highlight=False,
        )
    return 0


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    """Trained tokenizers in a directory with their recorded bounds (``--official``: the official ml-4m ones)."""
    if args.official:
        return cmd_list_official(args, console)
    reports = []
    for path in sorted(Path(args.tokenizers).glob("*/report.json")):
        reports.append(read_json(path, "tokenizer report"))
    if not reports:
        console.print(f"no trained tokenizers in {args.tokenizers}")
        return 0
    console.print(bound_table(reports, title=f"trained tokenizers in {args.tokenizers}"))
    return 0


def cmd_data_tokenize(args: argparse.Namespace, console: Console) -> int:
    """Pre-tokenise a store with the trained tokenizers (resumable), K crops per image."""
    from fourm_core.devices import Placement
    from fourm_core.registry import Registry
    from fourm_core.tokenizers.pretokenize import tokenize_store

    place = Placement.resolve(args.device, args.dtype)  # --device cuda without a GPU: one line, before any loading
    registry = Registry()
    check_modality_names(registry, args.only, "--only")
    console.print(place.describe(), highlight=False)
    with progress_bar(console) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        results = tokenize_store(
            args.store,
            args.tokenizers,
            registry,
            only=args.only or None,
            crops=args.crops,
            seed=args.seed,
            on_progress=on_progress,
            shard=args.shard,
            device=args.device,
            dtype=args.dtype,
        )
    rows = [(r.modality, r.tokenizer, r.done, r.failed, r.samples_per_s, r.note) for r in results]
    console.print(work_table("pre-tokenisation", "tokenizer", rows))
    return 0


def add_tokenizer_commands(sub: Any, console: Console) -> None:
    """Register ``fourm tokenizer ...`` on the main parser (``fourm data tokenize`` is added by
    :func:`add_data_tokenize`, called by the ``data`` group)."""
    tok = sub.add_parser("tokenizer", help="train and measure modality tokenizers").add_subparsers(
        dest="tokenizer_command", required=True
    )
    p = tok.add_parser("train", help="train tokenizers on a store (writes model.safetensors + config.json)")
    p.add_argument(
        "names", nargs="*", help="modalities or tokenizer names (a shared tokenizer trains on all its modalities)"
    )
    p.add_argument("--all", action="store_true", help="every learned tokenizer whose data the store has")
    p.add_argument("--store", required=True)
    p.add_argument("--out", default=DEFAULT_DIR)
    p.add_argument("--steps", type=positive_int, default=3000)
    p.add_argument("--seconds", type=positive_float, default=110.0, help="training time cap per tokenizer")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=non_negative_int, default=None)
    add_device_arguments(p)
    p.set_defaults(func=partial(cmd_train, console=console))

    p = tok.add_parser("eval", help="bound metrics and a picture of originals over reconstructions")
    p.add_argument("name")
    p.add_argument("--store", required=True)
    p.add_argument("--tokenizers", type=existing_dir, default=DEFAULT_DIR)
    p.add_argument("--png", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_eval, console=console))

    p = tok.add_parser("list", help="trained tokenizers and their bounds, or (--official) the official ml-4m ones")
    p.add_argument("--tokenizers", default=DEFAULT_DIR)
    p.add_argument(
        "--official",
        action="store_true",
        help="the official ml-4m tokenizers the plugins declare: hub id, normalisation, tokens, resolution, cached",
    )
    p.add_argument("--json", action="store_true", help="with --official: one JSON record per modality")
    p.set_defaults(func=partial(cmd_list, console=console))


def add_data_tokenize(data: Any, console: Console) -> None:
    """Register ``tokenize`` on the ``fourm data`` sub-parsers."""
    p = data.add_parser("tokenize", help="pre-tokenise a store with trained tokenizers (resumable, multi-crop)")
    p.add_argument("store")
    p.add_argument("--tokenizers", type=existing_dir, default=DEFAULT_DIR, help="the trained tokenizers' folder")
    p.add_argument("--only", nargs="*", default=[], help="modalities to tokenise (default: every trained one)")
    p.add_argument("--crops", type=positive_int, default=1, help="crops per image; crop 0 is the full image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard", type=shard_argument, default=None, metavar="I/N", help=SHARD_HELP)
    add_device_arguments(p)
    p.set_defaults(func=partial(cmd_data_tokenize, console=console))
