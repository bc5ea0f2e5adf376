"""``fourm train``: run a training config on this process, or on N processes through torchrun.

``fourm train --config C`` trains in this process (a world of one). ``--nproc N`` re-launches the same command under
``torchrun --nproc_per_node N`` on 127.0.0.1 (gloo on CPU, NCCL on GPUs), with the CPU threads split between the
processes. ``--nnodes N --node-rank R --master-addr A [--master-port P]`` (or ``--rdzv-endpoint HOST:PORT``) makes
this machine one of N (:mod:`fourm_core.training.rendezvous`; docs/distributed.md). ``--device cuda|cpu|auto``
(``engine.device``) picks the accelerator: ``cuda`` without a GPU is refused in one line before anything starts,
``auto`` takes a GPU when there is one; the choice, a per-GPU memory estimate and the peak the MFU is measured
against are printed before the first step. ``--set schedule.steps=20`` overrides any config key. A run resumes from
its latest checkpoint unless ``--restart``. With ``model.init`` (a hub id such as ``EPFL-VILAB/4M-21_B``, a folder,
a ``.safetensors`` file or a fourm run folder) the run starts from those weights, its own modality keys may differ,
and the summary of what was loaded, new, dropped and re-initialised is printed before the first step (see
:mod:`fourm_core.training.warmstart`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from fourm_core.apps.cli.errors import non_negative_int, positive_int
from fourm_core.errors import UsageError, one_line
from fourm_core.training.rendezvous import (
    DEFAULT_PORT,
    WORLD_VARIABLES,
    LaunchPlan,
    adopt_launcher_environment,
    endpoint,
    port_number,
)

__all__ = ["add_train_commands", "parse_overrides"]


def parse_overrides(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["schedule.steps=20", "engine.precision=bf16"]`` -> ``{dotted key: YAML-parsed value}``.

    Every ``key=value`` command-line option goes through here (``--set`` config overrides, ``fourm data``'s
    ``--option`` source settings), so they all accept the same YAML values; ``flag`` names the option in errors."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} takes key=value, got {item!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"{flag} {item!r}: the value is not valid YAML ({one_line(str(exc))})") from None
    return out


def _plan(args: argparse.Namespace) -> LaunchPlan:
    return LaunchPlan(
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
    )


def _launch(args: argparse.Namespace, plan: LaunchPlan) -> int:
    """Re-run this command under torchrun: ``--nproc`` processes here, on one node or one of ``--nnodes``."""
    from fourm_core.training.device import _free_port

    threads = max(1, (os.cpu_count() or 1) // args.nproc)
    # a world this process belongs to (an embedding program, a test) must not leak into the launched one
    env = {k: v for k, v in os.environ.items() if k not in WORLD_VARIABLES}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(threads))
    command = [
        sys.executable,
        "-m",
        "fourm_core.training.torchrun",  # torchrun itself, its failure one line (the ranks' own lines above it)
        *plan.torchrun_args(_free_port()),
        "-m",
        "fourm_core.training.launch",
        "--config",
        args.config,
        *[f"--set={s}" for s in args.set],
        *(["--restart"] if args.restart else []),
    ]
    return subprocess.call(command, env=env)


def run_training(config_path: str, overrides: list[str], restart: bool, console: Console) -> int:
    """Train in this process (rank from the environment when torchrun started it), rank 0 drawing progress."""
    from fourm_core.apps.cli.data import progress_bar
    from fourm_core.training.config import load_run_config
    from fourm_core.training.engine import train

    config = load_run_config(config_path, **parse_overrides(overrides))
    adopt_launcher_environment()  # srun's task variables as torchrun's (nothing under torchrun or alone)
    rank = int(os.environ.get("RANK", "0"))
    with progress_bar(console) as bar:
        task = bar.add_task("training", total=None)

        def progress(step: int, total: int, record: dict[str, Any]) -> None:
            mfu = record.get("mfu")
            bar.update(
                task,
                completed=step,
                total=total,
                description=f"loss {record['loss']:.3f} | {record['useful_tokens_per_s'] or 0:,.0f} tok/s"
                + (f" | MFU {mfu:.0%}" if mfu is not None else ""),
            )

        def on_init(report: Any, network: Any) -> None:  # model.init: what was loaded, new, dropped
            for line in report.lines():
                console.print(escape(line))

        result = train(
            config,
            resume=not restart,
            progress=progress if rank == 0 else None,
            on_init=on_init if rank == 0 else None,
            announce=(lambda line: console.print(escape(line))) if rank == 0 else None,
        )
    if rank == 0:
        if result.resumed_from:
            console.print(f"resumed at step {result.resumed_from}")
        if result.validation:
            first, last = result.validation[0], result.validation[-1]
            console.print(
                f"validation loss {first['loss']:.3f} (step {first['step']}) -> {last['loss']:.3f} "
                f"(step {last['step']})"
            )
            console.print(json.dumps({k: round(v, 3) for k, v in last["losses"].items()}))
        console.print(f"weights: {escape(str(result.final_dir))}; log: {escape(str(result.log_path))}")
    return 0


def _check_device(args: argparse.Namespace) -> None:
    """``--device`` (or the config's ``engine.device``) checked here, before torchrun starts any process."""
    from fourm_core.training.config import load_run_config
    from fourm_core.training.device import resolve_device

    if args.device is not None:
        args.set = [*args.set, f"engine.device={args.device}"]
        resolve_device(args.device, "--device")
    else:
        resolve_device(load_run_config(args.config, **parse_overrides(args.set)).engine.device, args.config)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    plan = _plan(args)
    plan.check()  # a node flag torchrun would hang on: one line, before the config is read
    _check_device(args)
    if plan.needs_torchrun:
        return _launch(args, plan)
    return run_training(args.config, args.set, args.restart, console)


def add_train_commands(sub: Any, console: Console) -> None:
    p = sub.add_parser(
        "train",
        help="train a 4M model from a YAML run config (DeepSpeed)",
        epilog="Several machines, torchrun, the deepspeed launcher, SLURM: see docs/distributed.md.",
    )
    p.add_argument("--config", required=True, help="run config YAML (see configs/train/)")
    p.add_argument("--nproc", type=positive_int, default=1, help="processes on this machine (torchrun)")
    nodes = p.add_argument_group("several machines (torchrun; run the same command on every node)")
    nodes.add_argument("--nnodes", type=positive_int, default=1, help="machines in the run (default 1)")
    nodes.add_argument("--node-rank", type=non_negative_int, default=None, help="this machine's rank, 0 to N-1")
    nodes.add_argument("--master-addr", default=None, help="address of node 0, reachable from every node")
    nodes.add_argument(
        "--master-port",
        type=port_number,
        default=None,
        help=f"port on node 0 (default: $MASTER_PORT, else {DEFAULT_PORT}; one node alone: a free port)",
    )
    nodes.add_argument(
        "--rdzv-endpoint", type=endpoint, default=None, metavar="HOST:PORT", help="c10d rendezvous instead of a master"
    )
    nodes.add_argument("--rdzv-id", default=None, help="the c10d rendezvous's job id (default: fourm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default=None,
        help="accelerator (default: the config's engine.device, auto: cuda when a GPU is visible)",
    )
    p.add_argument("--restart", action="store_true", help="ignore existing checkpoints in out_dir")
    p.set_defaults(func=lambda a: cmd_train(a, console))
