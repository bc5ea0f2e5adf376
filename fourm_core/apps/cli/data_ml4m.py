"""``fourm data export-ml4m`` / ``import-ml4m``: move stores to and from ml-4m's per-modality tar shard layout
(:mod:`fourm_core.storage.ml4m_layout`)."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fourm_core.apps.cli.errors import positive_int
from fourm_core.errors import UsageError
from fourm_core.spec import PRESETS


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _print(console: Console, title: str, report: Any) -> None:
    table = Table(title=title)
    for col in ("folder", "store part", "form"):
        table.add_column(col)
    for f in report.folders:
        table.add_row(f.folder, f"{f.part}:{f.array}", f.ext)
    console.print(table)
    console.print(f"{report.samples} samples in {report.shards} shard(s) per folder")
    for note in report.skipped:
        console.print(f"skipped: {escape(note)}")


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from fourm_core.storage.ml4m_layout import Ml4mLayoutError, export_ml4m
    from fourm_core.storage.store import StoreError

    try:
        report = export_ml4m(args.store, args.out, only=_names(args.only), shard_size=args.shard_size)
    except (Ml4mLayoutError, StoreError) as exc:
        raise UsageError(" ".join(str(exc).split())) from exc
    _print(console, f"{args.store} -> {args.out} (ml-4m layout)", report)
    return 0


def cmd_import(args: argparse.Namespace, console: Console) -> int:
    from fourm_core.apps.cli.data import DEFAULT_IMAGE_SIZE
    from fourm_core.storage.ml4m_layout import Ml4mLayoutError, import_ml4m
    from fourm_core.storage.store import StoreError

    size = args.image_size or DEFAULT_IMAGE_SIZE[args.preset]
    try:
        report = import_ml4m(
            args.location, args.out, args.preset, size, block_size=args.block_size, only=_names(args.only)
        )
    except (Ml4mLayoutError, StoreError) as exc:
        raise UsageError(" ".join(str(exc).split())) from exc
    _print(console, f"{args.location} (ml-4m layout) -> {args.out}", report)
    return 0


def add_ml4m_commands(data: Any, console: Console) -> None:
    """Register ``export-ml4m`` and ``import-ml4m`` on the ``fourm data`` subparsers."""
    p = data.add_parser("export-ml4m", help="write a store's labels and tokens as ml-4m's per-modality tar shards")
    p.add_argument("store")
    p.add_argument("--out", required=True, help="a new folder: <ml-4m folder>/shard-00000.tar ...")
    p.add_argument("--only", default=None, metavar="M1,M2", help="modalities to export (default: every exportable)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="samples per tar shard")
    p.set_defaults(func=partial(cmd_export, console=console))

    p = data.add_parser("import-ml4m", help="read ml-4m's per-modality tar shards into a new store")
    p.add_argument("location", help="the folder holding ml-4m's <modality>/shard-*.tar")
    p.add_argument("--out", required=True, help="a new store path")
    p.add_argument("--only", default=None, metavar="M1,M2", help="modalities to import (default: every known folder)")
    p.add_argument("--preset", choices=PRESETS, default="tiny")
    p.add_argument("--image-size", type=positive_int, default=None, help="default: 64 (tiny) or 224 (paper)")
    p.add_argument("--block-size", type=positive_int, default=64, help="samples per block (a power of two)")
    p.set_defaults(func=partial(cmd_import, console=console))
