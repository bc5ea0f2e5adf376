"""The ``fourm`` command line: inspect plugins and modalities, build the vocabulary, validate plugins, run the demo.

Subcommands stay thin: each parses arguments and calls a library function, so everything here is also usable from
Python.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fourm_core import __version__
from fourm_core.apps.cli.errors import FourmArgumentParser, debug_requested, positive_float, positive_int, run_reported
from fourm_core.errors import UsageError
from fourm_core.registry import Modality, Registry, resolve_ref
from fourm_core.spec import PRESETS

console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 220)

#: The core's commands, in help order: each ``module:function`` adds its commands to the top-level sub-parsers,
#: called as ``function(subparsers, console)``. Plugins' commands (``fourm_register_commands``) come after them.
CORE_COMMANDS: tuple[str, ...] = (
    "fourm_core.apps.cli.main:add_registry_commands",
    "fourm_core.apps.cli.data:add_data_commands",
    "fourm_core.apps.cli.tokenizer:add_tokenizer_commands",
    "fourm_core.apps.cli.train:add_train_commands",
    "fourm_core.apps.cli.generate:add_generate_commands",
    "fourm_core.apps.cli.retrieve:add_retrieve_commands",
    "fourm_core.apps.cli.bench:add_bench_commands",
    "fourm_core.apps.cli.main:add_demo_command",
)


def _registry(args: argparse.Namespace) -> Registry:
    """The registry the parser was built with (so its command problems show in ``fourm plugins``)."""
    registry = getattr(args, "registry", None)
    return registry if registry is not None else Registry()


def modality_record(m: Modality, registry: Registry, preset: str) -> dict:
    """The JSON record ``fourm modalities --json`` prints for one modality plugin."""
    spec = m.spec
    layout = spec.layout(preset)
    return {
        "name": m.name,
        "model_key": m.model_key(preset),
        "id": m.id(preset),
        "kind": spec.kind.value,
        "embedding": spec.embedding.value,
        "vocabulary": spec.vocabulary.value,
        "vocab_size": layout.vocab_size,
        "max_tokens": layout.max_tokens,
        "input_only": spec.input_only,
        "target_only": spec.target_only,
        "group": spec.group,
        "masking": spec.masking.value,
        "depends_on": list(spec.depends_on),
        "labelers": [lab.name for lab in registry.labelers(m.name)],
        "tokenizer_family": spec.tokenizer.family if spec.tokenizer else None,
        "tokenizer_shared_as": spec.tokenizer.shared_as if spec.tokenizer else None,
        "serializer": registry.serializer_spec(m.name) is not None,
        "decoders": [d.name for d in registry.decoders(m.name)],
        "distribution": m.plugin.distribution,
        "version": m.plugin.version,
    }


def _print_problems(registry: Registry) -> None:
    for problem in registry.problems:
        console.print(f"[red]problem[/red] {escape(str(problem))}", highlight=False)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List plugin distributions, versions, hooks and load errors."""
    registry = _registry(args)
    records = registry.plugins()
    if args.json:
        print(
            json.dumps(
                {"plugins": [r.as_dict() for r in records], "problems": [p.__dict__ for p in registry.problems]},
                indent=2,
            )
        )
        return 0
    table = Table(title=f"fourm {__version__}: {len(records)} plugins")
    for col in ("entry point", "distribution", "version", "status", "hooks"):
        table.add_column(col)
    for r in records:
        status = "blocked" if r.blocked else ("[red]error[/red]" if r.errors else "ok")
        hooks = ", ".join(h.removeprefix("fourm_") for h in r.hooks)
        table.add_row(escape(r.name), escape(r.distribution), escape(r.version), status, hooks)
    console.print(table)
    for r in records:
        for err in r.errors:
            console.print(f"[red]{escape(r.label)}[/red]: {escape(err)}", highlight=False)
    return 0


def cmd_modalities(args: argparse.Namespace) -> int:
    """Table (or JSON) of registered modalities in dependency order."""
    registry = _registry(args)
    mods = [
        m
        for m in registry.modalities()
        if not args.pattern or any(fnmatch.fnmatch(s, f"*{args.pattern}*") for s in (m.name, m.model_key(args.preset)))
    ]
    if args.json:
        print(json.dumps([modality_record(m, registry, args.preset) for m in mods], indent=2))
        return 0
    keys = registry.model_keys(args.preset)
    targets = sum(1 for ms in keys.values() if ms[0].spec.is_target)
    shown = f"{len(mods)} of {len(registry.modalities())}" if args.pattern else f"{len(mods)}"
    table = Table(title=f"{shown} modality plugins, {len(keys)} model keys ({targets} targets), preset {args.preset}")
    for col in (
        "name",
        "model key",
        "id",
        "kind",
        "emb",
        "vocab",
        "tokens",
        "masking",
        "labelers",
        "tokenizer",
        "decoder",
        "provider",
    ):
        table.add_column(col, overflow="fold")
    for m in mods:
        rec = modality_record(m, registry, args.preset)
        vocab = str(rec["vocab_size"]) if rec["vocab_size"] else rec["vocabulary"]
        io = " (in)" if rec["input_only"] else ""
        family = rec["tokenizer_family"]
        if rec["vocabulary"] == "text":
            tok = "wordpiece" + (f"+{family}" if family else "")
        else:
            tok = family or "-"
        if rec["tokenizer_shared_as"]:
            tok += f" [{rec['tokenizer_shared_as']}]"
        decoder = ", ".join(rec["decoders"]) or ("parse" if rec["serializer"] else "-")
        cells = (
            m.name,
            rec["model_key"] + io,
            str(rec["id"]),
            rec["kind"],
            rec["embedding"],
            vocab,
            str(rec["max_tokens"]),
            rec["masking"],
            ", ".join(rec["labelers"]) or "-",
            tok,
            decoder,
            f"{m.plugin.distribution} {m.plugin.version}",
        )
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
    _print_problems(registry)
    return 0


def cmd_vocab_build(args: argparse.Namespace) -> int:
    """Build (or adopt) the shared text vocabulary and write the manifests for every preset."""
    from fourm_core.vocab import TextVocabulary, build_manifest, build_text_vocabulary, read_corpus

    registry = _registry(args)
    out = Path(args.out)
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    if args.official:
        text = TextVocabulary.load(args.official)
        missing = [w for w in words if len(text.encode(w)) != 1]
        if missing:
            console.print(
                f"[yellow]note[/yellow]: not single tokens in {escape(args.official)}: {escape(str(missing[:10]))}"
            )
    else:
        if args.corpus:
            corpus = list(read_corpus(args.corpus))
            origin = f"{len(corpus)} documents from {', '.join(args.corpus)}"
        else:
            from fourm_core.testing.checks import example_corpus

            corpus = example_corpus(registry, per_modality=args.examples)
            origin = f"{len(corpus)} serialized plugin examples (pass --corpus for real captions)"
        if not corpus:
            raise UsageError(f"vocab build: the corpus {', '.join(args.corpus) or '(plugin examples)'} is empty")
        text = build_text_vocabulary(corpus, words, vocab_size=args.vocab_size)
        console.print(f"trained WordPiece on {origin}: {text.size} ids")
    path = text.save(out / "text_tokenizer.json")
    for preset in PRESETS:
        manifest = build_manifest(registry, preset, text)
        manifest.save(out / f"manifest.{preset}.json")
    console.print(f"wrote {path} and manifest.{{{','.join(PRESETS)}}}.json in {out}")
    _print_problems(registry)
    return 0


def _plugin_modalities(registry: Registry, target: str) -> list[str]:
    names = [m.name for m in registry.modalities() if target in (m.name, m.plugin.name, m.plugin.distribution)]
    return names


def cmd_validate(args: argparse.Namespace) -> int:
    """Run the conformance checks on one plugin (by entry point, distribution or modality name) or on all."""
    from fourm_core.testing.checks import run_checks

    registry = _registry(args)
    if args.all:
        names = registry.names()
    else:
        names = _plugin_modalities(registry, args.plugin)
        if not names:
            record = next((r for r in registry.plugins() if args.plugin in (r.name, r.distribution)), None)
            why = f": {'; '.join(record.errors) or 'blocked'}" if record and not record.ok else ""
            raise UsageError(f"validate {args.plugin}: no loaded modality from {args.plugin!r}{why}")
    results = run_checks(registry, names)
    table = Table(title=f"conformance: {len(names)} modalities")
    table.add_column("modality")
    checks = list(dict.fromkeys(r.check for r in results))
    for c in checks:
        table.add_column(c)
    for name in names:
        row = {r.check: r for r in results if r.modality == name}
        table.add_row(name, *("ok" if row[c].ok else "[red]FAIL[/red]" for c in checks))
    console.print(table)
    failures = [r for r in results if not r.ok]
    for r in failures:
        console.print(f"[red]{r.modality}/{r.check}[/red]: {escape(r.message)}", highlight=False)
    return 1 if failures else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default (grows with the project; see ``fourm_core.apps.demo.run``)."""
    from fourm_core.apps.demo.run import run_demo

    return run_demo(
        Path(args.out),
        console,
        samples=args.samples,
        tokenizer_seconds=args.tokenizer_seconds,
        train_seconds=args.train_seconds,
    )


def add_registry_commands(sub: Any, console: Console) -> None:
    """``fourm plugins``, ``modalities``, ``vocab build`` and ``validate``: what the registry holds."""
    p = sub.add_parser("plugins", help="plugin distributions, versions, hooks and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("modalities", help="registered modalities")
    p.add_argument("pattern", nargs="?", help="substring or glob on the name or model key")
    p.add_argument("--json", action="store_true")
    p.add_argument("--preset", choices=PRESETS, default="paper")
    p.set_defaults(func=cmd_modalities)

    vocab = sub.add_parser("vocab", help="the shared text vocabulary").add_subparsers(
        dest="vocab_command", required=True
    )
    p = vocab.add_parser("build", help="train the WordPiece vocabulary (or adopt the official one) + manifests")
    p.add_argument("--corpus", nargs="*", default=[], help="text files or folders of .txt (one document per line)")
    p.add_argument("--official", help="use this tokenizer JSON (e.g. ml-4m's text_tokenizer_4m_wordpiece_30k.json)")
    p.add_argument("--vocab-size", type=positive_int, default=30000)
    p.add_argument("--examples", type=positive_int, default=500, help="serialized examples per modality when no corpus")
    p.add_argument("--out", default="vocab")
    p.set_defaults(func=cmd_vocab_build)

    p = sub.add_parser("validate", help="run the conformance checks on a plugin")
    p.add_argument("plugin", nargs="?", help="entry point, distribution or modality name")
    p.add_argument("--all", action="store_true", help="every loaded modality")
    p.set_defaults(func=cmd_validate)


def add_demo_command(sub: Any, console: Console) -> None:
    """``fourm demo``: the main job on the embedded default."""
    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--out", default="demo")
    p.add_argument("--samples", type=positive_int, default=256, help="synthetic scenes to render")
    p.add_argument("--tokenizer-seconds", type=positive_float, default=30.0, help="training time per tokenizer")
    p.add_argument("--train-seconds", type=positive_float, default=240.0, help="training time of the tiny 4M (seconds)")
    p.set_defaults(func=cmd_demo)


def add_plugin_commands(sub: Any, registry: Registry) -> None:
    """Add every plugin command (``fourm_register_commands``): ``factory(parser)`` adds the command's arguments and
    returns ``run(args) -> int``. A name taken by a core command, or a factory that fails, is a problem naming the
    plugin (printed on stderr, kept in ``fourm plugins``); the other commands keep working."""
    from fourm_core.registry.commands import collect_commands, report_command_problem

    for command in collect_commands(registry):
        if command.name in sub.choices:
            message = "clashes with the core command of that name; not added"
            report_command_problem(registry, command, "conflict", message)
            _warn(f"{command.plugin.label}: command {command.name!r} {message}")
            continue
        own = argparse.ArgumentParser(prog=f"fourm {command.name}", add_help=False)
        try:
            run = resolve_ref(command.spec.factory)(own)
            if not callable(run):
                raise TypeError(f"returned {type(run).__name__}, not a run(args) -> int function")
        except Exception as exc:  # a broken plugin command is data, whatever it raised
            message = f"is not available: its factory {command.spec.factory!r} failed: {exc!r}"
            report_command_problem(registry, command, "hook", message)
            _warn(f"{command.plugin.label}: command {command.name!r} {message}")
            continue
        p = sub.add_parser(command.name, help=command.spec.help or f"from {command.plugin.label}", parents=[own])
        p.set_defaults(func=run)


def _warn(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[yellow]fourm[/yellow]: {escape(message)}", highlight=False)


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``fourm``: the core's commands (:data:`CORE_COMMANDS`), then the plugins' ones from
    ``registry`` (default: the installed plugins)."""
    parser = FourmArgumentParser(
        prog="fourm", description="Any-to-any multimodal masked models, one plugin per modality."
    )
    parser.add_argument("--version", action="version", version=f"fourm {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too (or set FOURM_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for ref in CORE_COMMANDS:
        resolve_ref(ref)(sub, console)
    registry = registry if registry is not None else Registry()
    add_plugin_commands(sub, registry)
    parser.set_defaults(registry=registry)
    return parser


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> int:
    """Entry point of the ``fourm`` console script (``registry``: plugins to use instead of the installed ones).

    Every command ends through :func:`~fourm_core.apps.cli.errors.run_reported`: a user mistake is one line on
    stderr and exit code 2 (its traceback with ``--debug`` / ``FOURM_DEBUG=1``), a bug a traceback and exit code 1.
    Loading the plugins happens inside it too, so a plugin conflict in strict mode is one line as well."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        parser = build_parser(registry)
        args = parser.parse_args(argv)
        if args.command == "validate" and not args.all and not args.plugin:
            parser.error("validate needs a PLUGIN or --all")
        return int(args.func(args) or 0)

    return run_reported(run, debug_requested(argv))


if __name__ == "__main__":
    sys.exit(main())
