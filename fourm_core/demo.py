"""``fourm demo``: the most complete real job the project can run on the embedded default.

Today that is the plugin pipeline end to end without training: discover every installed plugin, run the conformance
suite on each modality, train the shared WordPiece vocabulary, write the vocabulary manifests of both presets, and
write one serialized example per sequence modality with its token ids, so a new user sees the exact strings and ids the
model will be trained on. Later stages (synthetic world, labeling, tokenizers, training, generation) extend this job.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from fourm_core.registry import Registry
from fourm_core.spec import PRESETS


def run_demo(out: Path, console: Console) -> int:
    """Run the demo into ``out``; returns a process exit code (non-zero when a plugin fails conformance)."""
    from fourm_core.testing.checks import example_corpus, run_checks
    from fourm_core.vocab import build_manifest, build_text_vocabulary

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    registry = Registry()
    timings["discover plugins"] = time.perf_counter() - t0
    keys = registry.model_keys("paper")
    console.print(
        f"[bold]1/4[/bold] {len(registry.plugins())} plugins, {len(registry.modalities())} modalities, "
        f"{len(keys)} model keys, {len(registry.problems)} problems"
    )
    for problem in registry.problems:
        console.print(f"  [red]problem[/red] {escape(str(problem))}", highlight=False)

    t0 = time.perf_counter()
    results = run_checks(registry, registry.names())
    timings["conformance"] = time.perf_counter() - t0
    failures = [r for r in results if not r.ok]
    (out / "conformance.json").write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    console.print(f"[bold]2/4[/bold] conformance: {len(results) - len(failures)}/{len(results)} checks pass")
    for r in failures:
        console.print(f"  [red]{r.modality}/{r.check}[/red] {escape(r.message)}", highlight=False)

    t0 = time.perf_counter()
    corpus = example_corpus(registry, per_modality=500)
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    text = build_text_vocabulary(corpus, words)
    text.save(out / "vocab" / "text_tokenizer.json")
    for preset in PRESETS:
        build_manifest(registry, preset, text).save(out / "vocab" / f"manifest.{preset}.json")
    timings["vocabulary"] = time.perf_counter() - t0
    console.print(
        f"[bold]3/4[/bold] vocabulary: {text.size} ids from {len(corpus)} documents, "
        f"{len(words)} plugin words; manifests in {out / 'vocab'}"
    )

    t0 = time.perf_counter()
    lines = [
        "# Serialized examples",
        "",
        "One random example per sequence modality: the value, the official-format "
        "string, and its ids in the demo vocabulary.",
        "",
    ]
    rng = random.Random(0)
    for key, members in registry.model_keys("paper").items():
        if not all(registry.serializer_spec(m.name) for m in members):
            continue
        ser = registry.key_serializer(key)
        value = ser.example(rng)
        serialized = ser.serialize(value, rng)
        ids = text.encode(serialized)
        shown = json.dumps(value, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o))
        names = ", ".join(m.name for m in members)
        lines += [
            f"## `{key}` ({names})",
            "",
            f"- value: `{shown[:400]}`",
            f"- string: `{serialized}`",
            f"- {len(ids)} ids: `{ids[:64]}{' ...' if len(ids) > 64 else ''}`",
            "",
        ]
    (out / "examples.md").write_text("\n".join(lines))
    timings["examples"] = time.perf_counter() - t0
    console.print(f"[bold]4/4[/bold] serialized examples in {out / 'examples.md'}")

    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    console.print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    return 1 if failures or registry.problems else 0
