"""``fourm demo``: the most complete real job the project can run on the embedded default.

Today: discover the plugins and run the conformance suite on each modality; render the synthetic world into a store;
pseudo-label every modality that has a labeler; train the shared WordPiece vocabulary on the store's captions and
write the vocabulary manifests; serialize one labelled sample of every sequence modality in the official format with
its token ids; draw a picture of a few scenes' modalities; train every learned tokenizer on the store with a short
time budget, measure its bound on held-out scenes and pre-tokenise the store; train a tiny 4M on the store and draw
its one-pass predictions from pixels. Stages reuse what a previous run wrote (the store resumes, trained tokenizers
and the trained model are kept). Generation and retrieval join this job as they land.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from fourm_core.registry import Registry
from fourm_core.serialization import SerializationError
from fourm_core.spec import PRESETS

DEMO_SAMPLES = 256
DEMO_SIZE = 64
#: training time per tokenizer in the demo (the benchmark uses 110 s; the bound table says what this buys)
DEMO_TOKENIZER_SECONDS = 30.0
#: training time of the demo's tiny 4M (``benchmarks/train_world.py`` trains longer on a bigger store)
DEMO_TRAIN_SECONDS = 240.0
#: the demo's 4M: the official "tiny" recipe narrowed to what 2 CPU cores train in minutes
DEMO_MODEL = {"dim": 256, "encoder_depth": 4, "decoder_depth": 4, "num_heads": 4}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype} {list(value.shape)}>"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _sequence_examples(registry: Registry, store: Any, text: Any, index: int) -> list[str]:
    """The labelled sample ``index`` of every sequence modality, as the official string and its ids."""
    lines = [
        "# Serialized sequences of one synthetic scene",
        "",
        f"Sample {index} of the demo store: each sequence modality's stored value, its official-format string "
        "and its ids in the demo vocabulary.",
        "",
    ]
    for key, members in registry.model_keys(store.preset).items():
        if not all(registry.serializer_spec(m.name) for m in members):
            continue
        values = {}
        for m in members:
            part = f"{m.name}/raw"
            if part in store.parts() and store.state(part)[index] == 1:
                values[m.name] = store.read(part, index)
                tokens = f"{m.name}/tokens"
                if tokens in store.parts() and store.state(tokens)[index] == 1:
                    values[m.name] = {**values[m.name], **store.read(tokens, index)}
        if not values:
            continue
        serializer = registry.key_serializer(key, store.preset)
        assemble, shown = False, None
        if len(members) > 1:
            value = {name: next(iter(v.values())) for name, v in values.items()}
            shown = value
        else:
            (raw,) = values.values()
            if hasattr(serializer, "from_store"):  # items + their tokens (poses, instances)
                value, assemble = raw, True
            elif len(raw) > 1:
                lines += [f"## `{key}`", "", f"- stored as arrays {sorted(raw)} and no codec assembles them", ""]
                continue
            else:
                value = shown = next(iter(raw.values()))
                if hasattr(serializer, "choose"):  # stores keep several variants (palettes of 1..7 colours): draw one
                    value = shown = serializer.choose(value, random.Random(index))
        try:
            if assemble:
                value = serializer.from_store(value)
            serialized = serializer.serialize(value)
        except SerializationError as exc:  # e.g. item tokens come from a tokenizer that is not trained yet
            lines += [f"## `{key}`", "", f"- not serializable yet: {exc}", ""]
            continue
        ids = text.encode(serialized)
        lines += [
            f"## `{key}` ({', '.join(values)}{', assembled from stored items and their tokens' if assemble else ''})",
            "",
            *([f"- stored: `{json.dumps(_jsonable(shown))[:300]}`"] if shown is not None else []),
            f"- string: `{serialized}`",
            f"- {len(ids)} ids: `{ids[:48]}{' ...' if len(ids) > 48 else ''}`",
            "",
        ]
    return lines


def _texts(registry: Registry, store: Any) -> list[str]:
    """Every stored free-text array of every labelled modality (the caption corpus of this store)."""
    texts = []
    for m in registry.modalities():
        names = [a.name for a in m.spec.storage if a.dtype == "text"]
        part = f"{m.name}/raw"
        if names and part in store.parts():
            for block in range(store.n_blocks):
                texts += [row[n] for row in store.read_block(part, block) if row for n in names]
    return texts


def _tokenizers(registry: Registry, store: Any, out: Path, seconds: float, console: Console) -> list[dict[str, Any]]:
    """Train (or reuse) every learned tokenizer on the demo store, then pre-tokenise it; returns the reports."""
    from fourm_core.tokenizers.config import TrainConfig
    from fourm_core.tokenizers.pretokenize import tokenize_store
    from fourm_core.tokenizers.workflow import REPORT, plan_tokenizers, train_tokenizer

    directory = out / "tokenizers"
    reports = []
    for plan in plan_tokenizers(registry, [], store):
        if plan.skip_reason:
            console.print(f"  skipped tokenizer {plan.name}: {escape(plan.skip_reason)}", highlight=False)
            continue
        saved = directory / plan.name / REPORT
        if saved.exists():
            reports.append(json.loads(saved.read_text()))
            continue
        report = train_tokenizer(registry, store, plan, directory, TrainConfig(steps=100000, max_seconds=seconds))
        bound = ", ".join(f"{k} {v:.3f}" for k, v in report["evaluation"]["bound"].items())
        console.print(f"  {plan.name}: {report['training']['steps']} steps, bound {bound}", highlight=False)
        reports.append(report)
    tokenize_store(store.path, directory, registry)
    return reports


def _bound_markdown(reports: list[dict[str, Any]], seconds: float) -> str:
    from fourm_core.tokenizers.workflow import bound_markdown

    intro = (
        f"Each tokenizer trained for about {seconds:.0f} s on the demo store (see benchmarks/ for the 110 s table). "
        "Baseline: the training mean (or majority) for every sample."
    )
    return f"# Tokenizer bounds on held-out demo scenes\n\n{intro}\n\n{bound_markdown(reports)}"


def _train_model(registry: Registry, out: Path, seconds: float, console: Console) -> dict[str, Any]:
    """Train (or reuse) a tiny 4M on the demo store for about ``seconds``; write curves, the validation table and
    the pixels-to-all probe picture. The step count comes from timing a few steps first."""
    from fourm_core.model.fourm import FourM
    from fourm_core.training.config import RunConfig
    from fourm_core.training.data import TrainingData
    from fourm_core.training.engine import FINAL, LOG_NAME, steps_for_seconds, train
    from fourm_core.training.report import curves_svg, probe_figure, read_log, validation_table
    from fourm_core.vocab import TextVocabulary

    run = out / "model"
    summary_path = run / "summary.json"
    if (run / FINAL / "model.safetensors").exists() and summary_path.exists():
        return json.loads(summary_path.read_text())
    base = {
        "out_dir": str(run),
        "vocabulary": str(out / "vocab" / "text_tokenizer.json"),
        "datasets": [{"name": "world", "store": str(out / "world.zarr"), "val_samples": 32}],
        "input_tokens": 128,
        "target_tokens": 128,
        "model": {"size": "tiny", "preset": "tiny", "overrides": DEMO_MODEL},
        "optim": {"lr": 1e-3, "min_lr": 1e-5},
        "engine": {"micro_batch_size": 16},
    }
    steps = max(5, steps_for_seconds(RunConfig.model_validate({**base, "schedule": {"steps": 1}}), seconds, registry))
    config = RunConfig.model_validate(
        {**base, "schedule": {"steps": steps, "warmup_steps": max(1, steps // 12)},
         "eval_every": max(1, steps // 8), "checkpoint_every": max(1, steps // 4), "log_every": max(1, steps // 40)}
    )  # fmt: skip
    result = train(config, registry)
    records = read_log(run / LOG_NAME)
    curves_svg(records, run / "curves.svg")
    (run / "validation.md").write_text(validation_table(records, every=2) + "\n")
    data = TrainingData(config, registry, TextVocabulary.load(config.vocabulary))
    model = FourM.from_pretrained(run / FINAL)
    accuracy = probe_figure(model, data, registry, out / "tokenizers", run / "pixels2all.png", n=6)
    summary = {
        "steps": result.steps,
        "validation_first": result.validation[0]["loss"],
        "validation_last": result.validation[-1]["loss"],
        "probe_token_accuracy": accuracy,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_demo(
    out: Path,
    console: Console,
    samples: int = DEMO_SAMPLES,
    workers: int = 1,
    tokenizer_seconds: float = DEMO_TOKENIZER_SECONDS,
    train_seconds: float = DEMO_TRAIN_SECONDS,
) -> int:
    """Run the demo into ``out``; returns a process exit code (non-zero when a plugin fails conformance)."""
    from fourm_core.labeling.runner import label_store
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.sources.synthetic import SyntheticWorld, WorldConfig
    from fourm_core.sources.synthetic.preview import scene_grid_png
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import AlignedStore
    from fourm_core.testing.checks import run_checks
    from fourm_core.vocab import build_manifest, build_text_vocabulary

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, start: float) -> None:
        timings[name] = round(time.perf_counter() - start, 2)

    t0 = time.perf_counter()
    registry = Registry()
    results = run_checks(registry, registry.names())
    failures = [r for r in results if not r.ok]
    (out / "conformance.json").write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    stage("plugins and conformance", t0)
    console.print(
        f"[bold]1/7[/bold] {len(registry.plugins())} plugins, {len(registry.modalities())} modalities, "
        f"{len(registry.model_keys())} model keys; conformance {len(results) - len(failures)}/"
        f"{len(results)} checks pass"
    )
    for problem in registry.problems:
        console.print(f"  [red]problem[/red] {escape(str(problem))}", highlight=False)
    for r in failures:
        console.print(f"  [red]{r.modality}/{r.check}[/red] {escape(r.message)}", highlight=False)

    t0 = time.perf_counter()
    adapter = SyntheticSource(samples, DEMO_SIZE, seed=0)
    store = create_source_store(out / "world.zarr", adapter, DEMO_SIZE, "tiny", 64)
    report = write_source(store, adapter, workers)
    stage("render synthetic world", t0)
    console.print(
        f"[bold]2/7[/bold] synthetic world: {samples} scenes at {DEMO_SIZE} px in {out / 'world.zarr'} "
        f"({report.written} new, {report.samples_per_s:.0f} scenes/s)"
    )

    t0 = time.perf_counter()
    plans = label_store(store.path, registry=registry, workers=workers)
    store = AlignedStore.open(store.path)  # re-read the parts the labeler declared
    stage("pseudo-labeling", t0)
    labelled = [p for p in plans if p.labeler]
    console.print(
        f"[bold]3/7[/bold] labelled {len(labelled)} modalities: "
        + ", ".join(f"{p.name} ({p.labeler})" for p in labelled)
    )
    for p in plans:
        if p.labeler is None:
            console.print(f"  skipped {p.name}: {escape(p.skip_reason or '')}", highlight=False)

    t0 = time.perf_counter()
    captions = _texts(registry, store)
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    text = build_text_vocabulary(captions, words)
    text.save(out / "vocab" / "text_tokenizer.json")
    for preset in PRESETS:
        build_manifest(registry, preset, text).save(out / "vocab" / f"manifest.{preset}.json")
    store.set_manifest(build_manifest(registry, "tiny", text))
    stage("vocabulary", t0)
    console.print(
        f"[bold]4/7[/bold] vocabulary: {text.size} ids from {len(captions)} stored texts and "
        f"{len(words)} plugin words; manifests in {out / 'vocab'}"
    )

    t0 = time.perf_counter()
    (out / "sequences.md").write_text("\n".join(_sequence_examples(registry, store, text, 0)))
    world = SyntheticWorld(WorldConfig(image_size=128), seed=0)
    scene_grid_png([world[i] for i in range(4)], out / "scenes.png")
    info = store.info()
    (out / "store_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    stage("examples and pictures", t0)
    console.print(f"[bold]5/7[/bold] {out / 'sequences.md'}, {out / 'scenes.png'}, {out / 'store_info.json'}")

    t0 = time.perf_counter()
    reports = _tokenizers(registry, store, out, tokenizer_seconds, console)
    (out / "tokenizers.md").write_text(_bound_markdown(reports, tokenizer_seconds))
    store = AlignedStore.open(store.path)  # re-read the parts pre-tokenisation declared
    (out / "sequences.md").write_text("\n".join(_sequence_examples(registry, store, text, 0)))  # with item tokens
    stage("tokenizers and pre-tokenisation", t0)
    console.print(
        f"[bold]6/7[/bold] {len(reports)} tokenizers in {out / 'tokenizers'} (reconstructions.png in each), "
        f"bounds in {out / 'tokenizers.md'}, tokens in the store"
    )

    t0 = time.perf_counter()
    summary = _train_model(registry, out, train_seconds, console)
    stage("4M training", t0)
    console.print(
        f"[bold]7/7[/bold] tiny 4M: {summary['steps']} steps, validation loss {summary['validation_first']:.3f} -> "
        f"{summary['validation_last']:.3f}; curves, table and pixels-to-all picture in {out / 'model'}"
    )

    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return 1 if failures or registry.problems else 0
