"""``fourm bench quality --config configs/bench/table1.yaml``: the Table 1 benchmark (:mod:`~.apps.bench.quality`)
from the command line: trains what is missing, evaluates every row, prints the table and writes the JSON and
markdown results (default ``benchmarks/results/<date>-<machine>-quality.{json,md}``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["add_bench_commands", "cmd_bench_quality", "default_results_path"]


def default_results_path(name: str) -> Path:
    """``benchmarks/results/<date>-<arch>-<cores>core-<name>.json``: one file per machine and day."""
    return (
        Path("benchmarks/results") / f"{date.today().isoformat()}-{platform.machine()}-{os.cpu_count()}core-{name}.json"
    )


def cmd_bench_quality(args: argparse.Namespace, console: Console) -> int:
    from fourm_core.apps.bench.quality import load_quality_config, run_quality_bench
    from fourm_core.apps.cli.train import parse_overrides

    config = load_quality_config(args.config, **parse_overrides(args.set))  # a bad config: one line, from fourm
    result = run_quality_bench(config, log=lambda line: console.print(escape(line), highlight=False))
    out = Path(args.out) if args.out else default_results_path("quality")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(result, args))
    console.print(result["markdown"], highlight=False)
    console.print(f"results: {escape(str(out))} and {escape(str(out.with_suffix('.md')))}")
    return 0


def _markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    command = " ".join(["fourm bench quality --config", args.config, *(f"--set {s}" for s in args.set)])
    timings = "\n".join(f"| {k} | {v} |" for k, v in result["timings_s"].items())
    return (
        f"# Quality benchmark ({result['date']}, {result['machine']['arch']}, {result['machine']['cores']} cores)\n\n"
        f"`{command}`\n\n{result['markdown']}\n| stage | seconds |\n|---|---|\n{timings}\n"
    )


def add_bench_commands(sub: Any, console: Console) -> None:
    """Register ``fourm bench quality`` on the top-level subparsers."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("quality", help="Table 1: train every row with the same budget and evaluate held-out tasks")
    p.add_argument("--config", required=True, help="benchmark YAML (see configs/bench/table1.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="results JSON (a .md beside it); default benchmarks/results/<date>-<machine>-...")
    p.set_defaults(func=lambda a: cmd_bench_quality(a, console))
