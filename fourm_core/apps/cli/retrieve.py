"""``fourm retrieve build`` / ``fourm retrieve query``: retrieval through predicted global embeddings.

``build`` indexes a store's stored global embeddings of one modality; ``query`` has a trained FourMNetwork predict that
modality's tokens from text and/or a stored sample's modalities, decodes them with the modality's tokenizer and
prints the nearest stored samples. Every check that can fail (unknown modality, no global tokenizer, missing or
stale index, unknown input key, missing model or vocabulary) runs before the model is loaded, so a mistake costs
no compute and names the fix; it is raised, and ``fourm`` shows it as one line (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fourm_core.apps.cli.errors import existing_dir, positive_int
from fourm_core.errors import UsageError

__all__ = ["add_retrieve_commands", "cmd_build", "cmd_query"]


def _registry() -> Any:
    from fourm_core.registry import Registry

    return Registry()


def cmd_build(args: argparse.Namespace, console: Console, registry: Any | None = None) -> int:
    """Index ``<modality>/raw`` of a store and save it (usearch file + JSON sidecar)."""
    from fourm_core.inference.retrieval import build_index, sidecar_path

    registry = registry or _registry()
    index = build_index(args.store, args.modality, registry)
    out = index.save(args.out)
    meta = index.meta
    record = {
        "index": str(out),
        "sidecar": str(sidecar_path(out)),
        "modality": meta.modality,
        "key": meta.key,
        "count": meta.count,
        "skipped": meta.skipped,
        "dim": meta.dim,
        "seconds": meta.build_seconds,
        "fingerprint": meta.fingerprint,
    }
    if getattr(args, "json", False):
        print(json.dumps(record, indent=2))
    else:
        console.print(
            f"indexed {meta.count} {escape(meta.modality)} embeddings ({meta.dim}-d, {meta.skipped} "
            f"skipped) of {escape(str(args.store))} in {meta.build_seconds:.2f} s -> {escape(str(out))}",
            highlight=False,
        )
    return 0


def _parse_texts(items: list[str]) -> dict[str, str]:
    texts = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--text {item!r}: expected KEY=TEXT (a text sequence key or modality, then its words)")
        texts[key.strip()] = text
    return texts


def cmd_query(args: argparse.Namespace, console: Console, registry: Any | None = None) -> int:
    """Predict the index's global embedding from the given inputs and print the nearest stored samples."""
    from fourm_core.inference.pipeline import Pipeline
    from fourm_core.inference.queries import describe_samples, resolve_key, store_inputs, text_inputs
    from fourm_core.inference.retrieval import EmbeddingIndex, RetrievalError, check_global_modality, retrieve
    from fourm_core.model.config import read_config
    from fourm_core.storage.store import AlignedStore

    registry = registry or _registry()
    # -- checks before any compute -------------------------------------------------------------------------------
    texts = _parse_texts(args.text or [])
    if not texts and args.sample is None:
        raise RetrievalError("no query: give --text KEY=TEXT and/or --sample N [--keys k1,k2]")
    if args.keys and args.sample is None:
        raise RetrievalError("--keys selects modalities of --sample N; give the sample too")
    index = EmbeddingIndex.load(args.index)
    modality = index.meta.modality
    check_global_modality(registry, modality)
    store_path = Path(args.store or index.meta.store)
    index.check_store(store_path)
    store = AlignedStore.open(store_path, mode="r")
    preset = store.preset
    if args.sample is not None and not 0 <= args.sample < store.n_samples:
        raise UsageError(f"--sample {args.sample}: {store_path} has samples 0..{store.n_samples - 1}")
    key = registry.get(modality).model_key(preset)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise RetrievalError(f"no model at {model_dir} (expected config.json + model.safetensors, e.g. RUN/final)")
    info = read_config(model_dir, registry).keys  # the model's key table, read without its weights
    if key not in info:
        raise RetrievalError(f"the model at {model_dir} has no key {key!r} (its keys: {sorted(info)})")
    keys = [k.strip() for k in (args.keys or "").split(",") if k.strip()] or None
    wanted = [resolve_key(registry, preset, k)[0] for k in [*texts, *(keys or [])]]
    unknown = [k for k in wanted if k not in info or not info[k].input]
    if unknown:
        raise RetrievalError(f"the model takes no input {', '.join(unknown)} (inputs: {sorted(info.inputs())})")
    needs_vocab = bool(texts) or args.sample is not None
    if needs_vocab and not Path(args.vocab).is_file():
        raise RetrievalError(f"no text vocabulary at {args.vocab} (fourm vocab build)")
    tokenizer = registry.tokenizer(modality, preset, args.tokenizers)
    if not tokenizer.trained:
        raise RetrievalError(f"the {modality!r} tokenizer in {args.tokenizers} is not trained")

    # -- compute -------------------------------------------------------------------------------------------------
    from fourm_core.model.network import FourMNetwork
    from fourm_core.vocab import TextVocabulary

    pipeline = Pipeline.create(None, registry, preset, TextVocabulary.load(args.vocab), args.tokenizers)
    inputs: dict[str, Any] = {}
    if args.sample is not None:
        found = store_inputs(pipeline, store_path, args.sample, keys)
        if keys is None:  # all the sample has that the model takes, but not the answer itself
            found = {k: v for k, v in found.items() if k != key and k in info and info[k].input}
        inputs.update(found)
    inputs.update(text_inputs(pipeline, texts))
    model = FourMNetwork.from_pretrained(model_dir, registry=registry).eval()
    step = {"num_steps": args.steps, "temperature": args.temperature}
    start = time.perf_counter()
    hits = retrieve(model, inputs, index, tokenizer, args.k, key, step, args.seed)
    seconds = time.perf_counter() - start
    texts_of = describe_samples(store_path, registry, [h.index for h in hits])
    records = [
        {"rank": h.rank + 1, "sample": h.index, "cosine": round(h.similarity, 6), "text": texts_of.get(h.index, "")}
        for h in hits
    ]
    if args.json:
        print(
            json.dumps(
                {"target": key, "inputs": sorted(inputs), "seconds": round(seconds, 4), "hits": records}, indent=2
            )
        )
        return 0
    table = Table(title=f"{key} predicted from {', '.join(sorted(inputs))} ({seconds * 1e3:.0f} ms)")
    for col in ("rank", "sample", "cosine", "text"):
        table.add_column(col, justify="right" if col != "text" else "left")
    for r in records:
        table.add_row(str(r["rank"]), str(r["sample"]), f"{r['cosine']:.4f}", escape(r["text"]))
    console.print(table)
    return 0


def add_retrieve_commands(sub: Any, console: Console) -> None:
    """Register ``fourm retrieve build`` and ``fourm retrieve query`` on the main parser's subcommands."""
    ret = sub.add_parser("retrieve", help="retrieval through predicted global embeddings").add_subparsers(
        dest="retrieve_command", required=True
    )
    p = ret.add_parser("build", help="index a store's global embeddings of one modality (cosine, usearch)")
    p.add_argument("--store", required=True)
    p.add_argument("--modality", required=True, help="a global-token modality the store has labelled")
    p.add_argument("--out", required=True, help="index file (a .json sidecar is written next to it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_build, console=console))

    p = ret.add_parser("query", help="predict a global embedding from inputs and list the nearest stored samples")
    p.add_argument("--model", required=True, help="a trained model directory (RUN/final)")
    p.add_argument("--index", required=True)
    p.add_argument("--tokenizers", required=True, type=existing_dir, help="directory of trained tokenizers")
    p.add_argument("--vocab", required=True, help="the text vocabulary (text_tokenizer.json)")
    p.add_argument("--store", default=None, help="the indexed store (default: the one the index records)")
    p.add_argument("--text", action="append", default=[], metavar="KEY=TEXT", help="text input of a sequence key")
    p.add_argument("--sample", type=int, default=None, help="use this stored sample's modalities as inputs")
    p.add_argument("--keys", default=None, help="comma-separated keys of --sample to use (default: all it has)")
    p.add_argument("--k", type=positive_int, default=5)
    p.add_argument("--steps", type=positive_int, default=1, help="MaskGIT steps for the global tokens")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=partial(cmd_query, console=console))
