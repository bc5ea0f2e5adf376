"""``fourm generate``: any-to-any generation from the command line, one sample at a time.

Example (tiny preset)::

    fourm generate --model RUN/final --tokenizers tokenizers --vocab vocab/text_tokenizer.json \\
        --input rgb=photo.png --input caption="a red car on a road" \\
        --targets depth,normal,caption --out out/ [--seed 0] [--steps 8] [--temperature 0.5] [--ensemble N] \\
        [--schedule s.yaml] [--no-constrain] [--prefix sam_instance="point v0=.. v1=.. polygon v0=.. ..."]

    fourm generate --model EPFL-VILAB/4M-21_B [--revision REV] --tokenizers official \\
        --vocab text_tokenizer_4m_wordpiece_30k.json --input rgb=photo.jpg --targets caption,depth --out out/

``--model`` takes a run folder (or its ``final/``), a published model's hub id (fetched into the Hugging Face cache,
``HF_HUB_OFFLINE`` honoured: an uncached id offline fails before anything runs), a folder in the hub layout or a
bare ``.safetensors`` with its config in the metadata.

writes one file per target (``out/<target>.png`` for pictures and drawn sequences, ``out/<target>.json`` for
vectors and for sequences no decoder drew, for example text that did not parse), ``out/grid.png`` (the inputs and
every picture in one labelled row, texts below, unparsed ones marked) and ``out/outputs.json`` (text and parsed value
or parse error of every sequence target, ids of every target, seconds per target), then prints a table of what it
wrote with the load time and each target's wall seconds. Every mistake in the request (unknown modality, an
input-only target, a missing tokenizer, a wrong image shape) is reported before the model runs. The command is a
thin shell over :meth:`fourm_core.inference.pipeline.Pipeline.generate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fourm_core.apps.cli.errors import existing_dir, non_negative_int, positive_int
from fourm_core.errors import UsageError

__all__ = ["add_generate_commands", "cmd_generate", "parse_inputs"]


def parse_inputs(items: list[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` -> ``{name: value}``; the value is a file path or text (split at the first ``=``,
    so text may contain more)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--input takes NAME=VALUE (a file or text), got {item!r}")
        if name in out:
            raise UsageError(f"--input {name} is given twice")
        out[name] = value
    return out


def cmd_generate(args: argparse.Namespace, console: Console) -> int:
    """Load the model, check the request, generate, write the files, print what was written. A mistake in the
    request raises an error the CLI shows as one line (exit code 2): it names what to fix."""
    import time

    import torch

    from fourm_core.inference.pipeline import Pipeline, model_folder, official_source
    from fourm_core.inference.requests import target_names
    from fourm_core.model.network import FourMNetwork
    from fourm_core.registry import Registry
    from fourm_core.vocab import TextVocabulary

    inputs = parse_inputs(args.input)
    prefixes = parse_prefixes(args.prefix)
    targets = target_names(args.targets)
    registry = Registry()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    official = official_source(args.model, args.revision)  # a hub id is fetched (or refused) before any compute
    if official is not None:
        pipeline = Pipeline.from_pretrained(
            official, args.tokenizers, args.vocab, args.preset, registry=registry, revision=args.revision
        )
    else:
        model_dir = model_folder(args.model)
        model = FourMNetwork.from_pretrained(model_dir, registry=registry).eval()
        vocabulary = TextVocabulary.load(args.vocab) if args.vocab else None
        pipeline = Pipeline.create(model, registry, args.preset, vocabulary, args.tokenizers)
    preset = pipeline.preset
    loaded = time.perf_counter() - started
    (result,) = pipeline.generate(
        [inputs],
        targets,
        schedule=args.schedule,
        seed=args.seed,
        steps=args.steps,
        temperature=args.temperature,
        top_p=args.top_p,
        ensemble=args.ensemble,
        constrain=args.constrain,
        prefix=prefixes,
    )
    written = write_result(result, Path(args.out))
    fused = f", {args.ensemble} generations fused" if args.ensemble > 1 else ""
    table = Table(title=f"generated (seed {args.seed}, preset {preset}{fused})")
    for col in ("target", "model key", "file", "seconds", "content"):
        table.add_column(col)
    for name, out in result.items():
        if out.text is None:
            content = f"{len(out.ids)} tokens"
        elif out.parse_error is None:
            content = out.text[:120]
        else:  # the note first: a long random text would push it out of the cell
            content = f"(unparsed: {out.parse_error[:60]}) {out.text[:60]}"
        seconds = f"{result.seconds[name]:.1f}" if name in result.seconds else "-"
        table.add_row(name, out.key, escape(str(written[name])), seconds, escape(content))
    console.print(table)
    console.print(f"model and vocabulary loaded in {loaded:.1f} s")
    console.print(f"grid: {escape(str(written['grid']))}; outputs: {escape(str(written['json']))}")
    return 0


def parse_prefixes(items: list[str]) -> dict[str, str]:
    """``--prefix KEY=TEXT`` arguments as ``{key: text}``; a malformed or repeated one is a one-line error."""
    from fourm_core.inference.requests import GenerationRequestError

    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise GenerationRequestError(f"--prefix {item!r}: expected KEY=TEXT (a sequence target and its start)")
        if key.strip() in out:
            raise GenerationRequestError(f"--prefix {key.strip()}: given twice")
        out[key.strip()] = text
    return out


def write_result(result: Any, out_dir: Path) -> dict[str, Path]:
    """One file per target, ``grid.png`` and ``outputs.json``; returns what went where. A picture (an image
    target, or a sequence its plugin drew: boxes on the input, a skeleton ...) is a PNG; a vector, or a sequence
    nobody drew (its text did not parse), its JSON record. Every sequence's text and value are in
    ``outputs.json`` too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, output in result.items():
        written[name] = output.save(out_dir / _file_name(name))
    written["grid"] = result.grid_png(out_dir / "grid.png")
    written["json"] = out_dir / "outputs.json"
    written["json"].write_text(json.dumps(result.to_json(), indent=2))
    return written


def _tokenizers_arg(text: str) -> str:
    """``--tokenizers``: ``official`` (the published tokenizers) or an existing folder."""
    return text if text == "official" else existing_dir(text)


def _file_name(name: str) -> str:
    """A file stem for a target name (model keys carry ``@``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def add_generate_commands(sub: Any, console: Console) -> argparse.ArgumentParser:
    """Register ``fourm generate`` on the top-level subparsers."""
    p = sub.add_parser("generate", help="generate target modalities from input modalities with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="a saved model folder (a run's final/), a published model's hub id (EPFL-VILAB/4M-21_B), a folder in "
        "the hub layout or a .safetensors file whose header holds its config",
    )
    p.add_argument("--revision", help="branch, tag or commit of a hub id (default: main)")
    p.add_argument(
        "--tokenizers",
        type=_tokenizers_arg,
        help="trained tokenizer directory, or 'official' for the published ones (needed for image and global tokens)",
    )
    p.add_argument(
        "--vocab",
        help="text vocabulary JSON (needed for sequence inputs and targets; official models: ml-4m's "
        "text_tokenizer_4m_wordpiece_30k.json, else $FOURM_OFFICIAL_VOCAB)",
    )
    p.add_argument("--preset", help="preset of the model (default: inferred from its keys)")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an input modality: a picture / .npy / .json / .txt file, or text for sequences; repeat",
    )
    p.add_argument("--targets", required=True, help="comma-separated modalities to generate, in order")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=positive_int, default=8, help="MaskGIT steps per image / global target")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (0: argmax)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    p.add_argument(
        "--ensemble",
        type=positive_int,
        default=1,
        metavar="N",
        help="draw N generations and fuse them per target (mean of continuous maps, vote of classes, "
        "most frequent text)",
    )
    p.add_argument(
        "--no-constrain",
        dest="constrain",
        action="store_false",
        help="sample sequence targets from the raw logits instead of within their format's grammar (by default "
        "every sequence whose serializer has a grammar is decoded within it, so its text parses)",
    )
    p.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help="the start of a sequence target's string, given instead of decoded (e.g. an instance's query point and "
        "box, so the model writes its mask tokens); repeat for several targets",
    )
    p.add_argument("--schedule", help="a schedule YAML instead of the default one (its targets must match)")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: torch's default)")
    p.set_defaults(func=lambda a: cmd_generate(a, console))
    return p
