"""``fourm data ...``: make stores from sources, label them, inspect and verify them."""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fourm_core.apps.cli.errors import check_modality_names, positive_int
from fourm_core.apps.cli.train import parse_overrides
from fourm_core.errors import UsageError
from fourm_core.spec import PRESETS
from fourm_core.storage.shards import SHARD_HELP, shard_argument

DEFAULT_IMAGE_SIZE = {"tiny": 64, "paper": 224}


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def work_table(title: str, worker: str, rows: list[tuple[str, str | None, int, int, float, str | None]]) -> Table:
    """Per-modality results of a block-wise job (labeling, pre-tokenisation): who did it, done, failed, rate, note."""
    table = Table(title=title)
    for col in ("modality", worker, "done", "failed", "samples/s", "note"):
        table.add_column(col)
    for name, who, done, failed, rate, note in rows:
        table.add_row(name, who or "-", str(done), str(failed), f"{rate:.0f}" if rate else "-", escape(note or ""))
    return table


def _user_error(exc: Exception) -> NoReturn:
    """A user mistake (not a store, a store built with other plugins ...): handed to the top-level handler as one
    line, exit code 2 (``--debug`` shows the traceback of ``exc``, chained)."""
    raise UsageError(" ".join(str(exc).split())) from exc


def _manifest(preset: str) -> Any:
    from fourm_core.registry import Registry
    from fourm_core.vocab import build_manifest

    return build_manifest(Registry(), preset)


def _write(console: Console, args: argparse.Namespace, source: str, location: str | None = None) -> int:
    """Build source ``source`` from the registry and write it into ``args.out`` (resuming a store of the same
    source); a bad source name or setting is one error line."""
    from fourm_core.sources.protocol import SourceError, SourceSettings, build_source
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import StoreError

    size = args.image_size or DEFAULT_IMAGE_SIZE[args.preset]
    try:
        options = parse_overrides(args.option, flag="--option")
        if getattr(args, "crop", None):
            options["crop"] = args.crop
        settings = SourceSettings(
            location=location, image_size=size, n=getattr(args, "n", None), seed=args.seed, options=options
        )
        adapter = build_source(source, settings)
        store = create_source_store(
            args.out,
            adapter,
            size,
            args.preset,
            args.block_size,
            _manifest(args.preset),
            append=getattr(args, "append", False),
        )
    except (SourceError, StoreError, ValueError, OSError) as exc:
        _user_error(exc)
    with progress_bar(console) as progress:
        task = progress.add_task(f"{adapter.name} -> {args.out}", total=len(store.todo_blocks("source")))
        report = write_source(store, adapter, args.workers, lambda n, total: progress.update(task, completed=n))
    console.print(
        f"wrote {report.written} samples ({report.failed} failed) in {report.seconds:.1f}s "
        f"({report.samples_per_s:.1f} samples/s)"
    )
    for index, message in sorted(report.errors.items())[:20]:
        console.print(f"  [red]sample {index}[/red]: {escape(message)}", highlight=False)
    return 0


def cmd_synth(args: argparse.Namespace, console: Console) -> int:
    """Render the synthetic world into a new (or resumed) store."""
    return _write(console, args, "synthetic_world")


def cmd_ingest(args: argparse.Namespace, console: Console) -> int:
    """Load a dataset (by default a folder of photos) into a new (or resumed) store; bad samples are reported and
    skipped."""
    return _write(console, args, args.source, args.location)


def cmd_sources(args: argparse.Namespace, console: Console) -> int:
    """The data sources the registry knows (built in and from plugins)."""
    from fourm_core.registry import Registry

    specs = Registry().sources()
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return 0
    table = Table(title=f"{len(specs)} data sources")
    for col in ("name", "provides", "description"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(s.name, ", ".join(s.provides) or "-", escape(s.description))
    console.print(table)
    return 0


def _label_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options labelers read (teachers: device, precision, downloads, random-init stand-ins); ``--device
    cuda`` without a GPU is one error line, before anything is planned."""
    from fourm_core.labeling.hub import resolve_device, teacher_options

    options: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
    if args.allow_random_teachers:
        options["allow_random_teachers"] = True
    if args.no_download:
        options["teacher_downloads"] = False
    teacher_options(options)
    if args.device == "cuda":
        resolve_device("cuda")
    return options


def _plan_records(plans: list[Any], registry: Any) -> list[dict[str, Any]]:
    out = []
    for p in plans:
        description = ""
        if p.labeler:
            description = next((lab.description for lab in registry.labelers(p.name) if lab.name == p.labeler), "")
        out.append(
            {
                "modality": p.name,
                "labeler": p.labeler,
                "model_id": p.model_id,
                "weights": p.weights,
                "derived_from": list(p.derived_from),
                "skip_reason": p.skip_reason,
                "description": description,
            }
        )
    return out


def _print_plan(console: Console, records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(records, indent=2))
        return
    table = Table(title="labeling plan")
    for col in ("modality", "labeler", "model", "weights", "why skipped"):
        table.add_column(col, overflow="fold")
    for r in records:
        weights = r["weights"] or "-"
        if r["weights"] and "random" in r["weights"]:
            weights = f"[yellow]{weights}[/yellow]"
        model = r["model_id"] or ("from " + ", ".join(r["derived_from"]) if r["derived_from"] else "-")
        table.add_row(r["modality"], r["labeler"] or "-", model, weights, escape(r["skip_reason"] or ""))
    console.print(table)
    if any(r["weights"] and "random" in r["weights"] for r in records):
        console.print("[yellow]random-init teachers[/yellow] give stand-in labels, not a real teacher's")


def cmd_label(args: argparse.Namespace, console: Console) -> int:
    """Run the labelers in dependency order, resuming where a previous run stopped (``--plan``: only say, per
    modality, which labeler would run with which teacher weights, or why it is skipped)."""
    from fourm_core.labeling.runner import ModalityPlan, label_store, plan_labeling
    from fourm_core.registry import Registry
    from fourm_core.storage.store import AlignedStore, StoreError

    if args.json and not args.plan:
        raise UsageError("--json prints the plan: use it with --plan")
    choices = {k: str(v) for k, v in parse_overrides(args.labeler, flag="--labeler").items()}
    registry = Registry()
    check_modality_names(registry, args.only, "--only")  # a typo would label nothing and report success
    check_modality_names(registry, list(choices), "--labeler")
    options = _label_options(args)
    try:  # the manifest is checked by label_store, against the vocabulary the store records
        store = AlignedStore.open(args.store, mode="r" if args.plan else "r+")
    except StoreError as exc:
        _user_error(exc)
    if args.plan:
        plans = plan_labeling(store, registry, choices, args.only or None, options)
        _print_plan(console, _plan_records(plans, registry), args.json)
        return 0
    with progress_bar(console) as progress:
        tasks: dict[str, Any] = {}

        def on_plan(plan: ModalityPlan) -> None:
            if plan.labeler is None:
                console.print(
                    f"[yellow]skip[/yellow] {plan.name}: {escape(plan.skip_reason or '')}",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                weights = plan.provenance.get("weights")
                note = f" [{escape(str(weights))}]" if weights else ""
                tasks[plan.name] = progress.add_task(f"{plan.name} ({plan.labeler}){note}", total=plan.blocks_todo)

        def on_progress(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done)

        try:
            plans = label_store(
                args.store,
                choices=choices,
                only=args.only or None,
                workers=args.workers,
                options=options,
                on_plan=on_plan,
                on_progress=on_progress,
                shard=args.shard,
            )
        except StoreError as exc:
            progress.stop()
            _user_error(exc)
    rows = [(p.name, p.labeler, p.done, p.failed, p.samples_per_s, p.skip_reason or p.note) for p in plans]
    console.print(work_table("labeling", "labeler", rows))
    return 0


def _random_init_parts(parts: dict[str, Any]) -> dict[str, str]:
    """``part -> why`` for parts written by a random-init teacher, or copied from one (a global embedding copies a
    teacher's CLS vector: its provenance names the part it came ``from``)."""
    marked: dict[str, str] = {}
    for part, p in parts.items():
        prov = p.get("provenance") or {}
        if prov.get("weights_source") == "random" or str(prov.get("weights", "")).startswith("random-init"):
            marked[part] = str(prov.get("weights") or "random-init")
    for part, p in parts.items():
        origin = (p.get("provenance") or {}).get("from")
        if part not in marked and origin and f"{origin}/raw" in marked:
            marked[part] = f"random-init (copied from {origin})"
    return marked


def cmd_info(args: argparse.Namespace, console: Console) -> int:
    """Sizes, completeness and provenance per part (``--json``: one record per modality)."""
    from fourm_core.storage.store import AlignedStore, StoreError

    try:
        store = AlignedStore.open(args.store, mode="r")
        info = store.info()
    except StoreError as exc:
        _user_error(exc)
    differences, notes = _manifest_report(store)
    if args.json:
        records = []
        for part, p in info["parts"].items():
            name, _, form = part.partition("/")
            records.append(
                {
                    "modality": name,
                    "form": form or "source",
                    "complete": p["complete"],
                    "completeness": p["done"] / info["n_samples"],
                    "done": p["done"],
                    "failed": p["failed"],
                    "todo": p["todo"],
                    "damaged": p["damaged"],
                    "bytes": p["bytes"],
                    "provenance": p["provenance"],
                }
            )
        random_init = _random_init_parts(info["parts"])
        for record, part in zip(records, info["parts"]):
            record["random_init"] = part in random_init
        store_record = {k: v for k, v in info.items() if k != "parts"}
        store_record["manifest"] = {"differences": differences, "notes": notes}
        print(json.dumps({"store": store_record, "modalities": records}, indent=2))
        return 0
    title = f"{info['path']}: {info['n_samples']} samples, {info['image_size']} px, preset {info['preset']}"
    table = Table(title=title)
    for col in ("part", "done", "failed", "to do", "MB", "provenance"):
        table.add_column(col, overflow="fold")
    random_init = _random_init_parts(info["parts"])
    for part, p in info["parts"].items():
        prov = escape(
            ", ".join(
                f"{k}={v}"
                for k, v in p["provenance"].items()
                if k in ("labeler", "weights", "method", "source", "teacher", "dtype")
            )
        )
        if part in random_init and "random-init" not in prov:
            prov = f"[yellow]{escape(random_init[part])}[/yellow] {prov}"
        table.add_row(part, str(p["done"]), str(p["failed"]), str(p["todo"]), f"{p['bytes'] / 2**20:.1f}", prov)
    console.print(table)
    if random_init:
        console.print(
            f"[yellow]note[/yellow] {len(random_init)} parts come from random-init teachers "
            f"({', '.join(sorted(random_init))}): stand-ins for tests and demos, not a real teacher's labels",
            highlight=False,
        )
    _print_findings(console, [d for p in info["parts"].values() for d in p["damaged"]], differences, notes)
    return 0


def _manifest_report(store: Any) -> tuple[list[str], list[str]]:
    """Differences (incompatible) and notes (plugin versions) between the store's manifest and the installed
    plugins, compared against the vocabulary the store records."""
    from fourm_core.registry import Registry
    from fourm_core.storage.manifest import manifest_report

    return manifest_report(store, Registry())


def _print_findings(console: Console, damaged: list[str], differences: list[str], notes: list[str]) -> None:
    for line in damaged:
        console.print(f"[red]damaged[/red] {escape(line)}; `fourm data verify` marks it to redo", highlight=False)
    for line in differences:
        console.print(f"[red]manifest[/red] {escape(line)}", highlight=False)
    for line in notes:
        console.print(f"[yellow]note[/yellow] {escape(line)}", highlight=False)


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    """Check every written block against its record (files, digest) and layout, and the store's manifest against the
    installed plugins; damaged blocks are marked to redo (unless ``--check-only``). Exit 1 when there are problems."""
    from fourm_core.storage.store import AlignedStore, StoreError

    try:
        store = AlignedStore.open(args.store, mode="r" if args.check_only else "r+")
        problems = store.verify(repair=not args.check_only)
    except StoreError as exc:
        _user_error(exc)
    differences, notes = _manifest_report(store)
    problems += [f"manifest: {d}" for d in differences]
    for problem in problems:
        console.print(f"[red]problem[/red] {escape(problem)}", highlight=False)
    _print_findings(console, [], [], notes)
    if any(p.endswith("marked to redo") for p in problems):
        console.print("rerun the command that wrote each part (ingest or synth, label, tokenize) to redo those blocks")
    console.print(f"{len(problems)} problems" if problems else "store verified: no problems")
    return 1 if problems else 0


def add_data_commands(sub: Any, console: Console) -> Any:
    """Register ``fourm data`` and its subcommands on the main parser (handlers take ``args`` only); returns the
    ``data`` subparsers."""
    data = sub.add_parser("data", help="stores: make, label, inspect").add_subparsers(
        dest="data_command", required=True
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--out", required=True, help="store path or URL, e.g. s3://bucket/x.zarr (new, or existing to resume)"
        )
        p.add_argument("--preset", choices=PRESETS, default="tiny")
        p.add_argument("--image-size", type=positive_int, default=None, help="default: 64 (tiny) or 224 (paper)")
        p.add_argument("--block-size", type=positive_int, default=64, help="samples per block (the unit of work)")
        p.add_argument("--workers", type=positive_int, default=1)
        p.add_argument("--seed", type=int, default=0, help="seed of generated sources")
        p.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE", help="a source setting (YAML value)"
        )

    p = data.add_parser("synth", help="render the synthetic world into a store")
    p.add_argument("--n", type=positive_int, required=True)
    common(p)
    p.set_defaults(func=partial(cmd_synth, console=console))

    p = data.add_parser("ingest", help="load a dataset into a store: a folder of photos, or any registered source")
    p.add_argument("location", help="what to read (a folder, a file: the source decides)")
    p.add_argument("--source", default="image_folder", help="registered source name (see `fourm data sources`)")
    p.add_argument("--crop", choices=("center", "pad"), default=None, help="photo folders: the crop option")
    p.add_argument("--n", type=positive_int, default=None, help="samples, for sources that generate them")
    p.add_argument(
        "--append", action="store_true", help="resuming: add files new in the folder as new samples (indices stay)"
    )
    common(p)
    p.set_defaults(func=partial(cmd_ingest, console=console))

    p = data.add_parser("sources", help="registered data sources (built in and from plugins)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_sources, console=console))

    p = data.add_parser("label", help="pseudo-label every modality (resumable)")
    p.add_argument("store")
    p.add_argument("--only", nargs="*", default=[], help="modalities to label (default: all)")
    p.add_argument("--labeler", action="append", default=[], metavar="MODALITY=NAME", help="pick a labeler")
    p.add_argument("--workers", type=positive_int, default=1)
    p.add_argument("--shard", type=shard_argument, default=None, metavar="I/N", help=SHARD_HELP)
    p.add_argument(
        "--plan", action="store_true", help="list per modality the labeler, its teacher and weights, or why skipped"
    )
    p.add_argument("--json", action="store_true", help="with --plan: the plan as JSON")
    p.add_argument(
        "--allow-random-teachers",
        action="store_true",
        help="teachers without weights run random-initialised (tests, demos; marked in provenance), not skipped",
    )
    p.add_argument("--no-download", action="store_true", help="use cached teacher weights only, even when online")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where teachers run")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="teacher precision")
    p.set_defaults(func=partial(cmd_label, console=console))

    p = data.add_parser("info", help="sizes, completeness and provenance")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_info, console=console))

    p = data.add_parser("verify", help="check every block against its checksum and schema; mark damaged ones to redo")
    p.add_argument("store")
    p.add_argument("--check-only", action="store_true", help="report damaged blocks without marking them to redo")
    p.set_defaults(func=partial(cmd_verify, console=console))

    from fourm_core.apps.cli.tokenizer import add_data_tokenize  # imports this module: only once it is loaded

    add_data_tokenize(data, console)
    from fourm_core.apps.cli.data_ml4m import add_ml4m_commands

    add_ml4m_commands(data, console)
    return data
