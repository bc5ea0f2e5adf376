"""``fourm demo``: the most complete real job the project can run on the embedded default.

Today: discover the plugins and run the conformance suite on each modality; render the synthetic world into a store;
pseudo-label every modality that has a labeler; train the shared WordPiece vocabulary on the store's captions and
write the vocabulary manifests; serialize one labelled sample of every sequence modality in the official format with
its token ids; draw a picture of a few scenes' modalities; train every learned tokenizer on the store with a short
time budget, measure its bound on held-out scenes and pre-tokenise the store; train a tiny 4M on the store and draw
its one-pass predictions from pixels; generate every target modality from the pixels of a few held-out scenes, chain
a caption into a global embedding into RGB tokens, and retrieve scenes by predicted global embeddings; write
``report.html`` (:mod:`fourm_core.apps.demo.report`). A last section takes scikit-image's sample photos through
the photo path (ingest, plan, label with whatever teachers can run: :mod:`.photos`). The stages live in
:mod:`.stages` (1-7) and :mod:`.generation`
(8, through one inference pipeline); this module runs them in order. Stages reuse what a previous run wrote (the
store resumes, trained tokenizers, the trained model and the generations are kept).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from fourm_core.apps.demo.generation import generate_and_retrieve
from fourm_core.apps.demo.photos import RANDOM_INIT_JSON, random_init_record, run_photo_section
from fourm_core.apps.demo.scenes import generation_line
from fourm_core.apps.demo.settings import (  # noqa: F401 (the demo's settings, importable from here as before)
    DEMO_LABEL_OPTIONS,
    DEMO_MODEL,
    DEMO_SAMPLES,
    DEMO_SCENES,
    DEMO_SIZE,
    DEMO_TOKENIZER_SECONDS,
    DEMO_TRAIN_SECONDS,
    GENERATION_DIR,
)
from fourm_core.apps.demo.stages import (
    bound_markdown,
    sequence_examples,
    stored_texts,
    train_model,
    train_tokenizers,
)
from fourm_core.registry import Registry
from fourm_core.spec import PRESETS


def run_demo(
    out: Path,
    console: Console,
    samples: int = DEMO_SAMPLES,
    workers: int = 1,
    tokenizer_seconds: float = DEMO_TOKENIZER_SECONDS,
    train_seconds: float = DEMO_TRAIN_SECONDS,
    scenes: int = DEMO_SCENES,
) -> int:
    """Run the demo into ``out``; returns a process exit code (non-zero when a plugin fails conformance)."""
    from fourm_core.apps.demo.report import write_report
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
        f"[bold]1/8[/bold] {len(registry.plugins())} plugins, {len(registry.modalities())} modalities, "
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
        f"[bold]2/8[/bold] synthetic world: {samples} scenes at {DEMO_SIZE} px in {out / 'world.zarr'} "
        f"({report.written} new, {report.samples_per_s:.0f} scenes/s)"
    )

    t0 = time.perf_counter()
    # the synthetic world has no real-photo teachers' weights to need: teachers whose weights are not cached run
    # random-initialised (marked so in provenance and `fourm data info`), and nothing is downloaded
    plans = label_store(store.path, registry=registry, workers=workers, options=DEMO_LABEL_OPTIONS)
    store = AlignedStore.open(store.path)  # re-read the parts the labeler declared
    stage("pseudo-labeling", t0)
    labelled = [p for p in plans if p.labeler]
    console.print(
        f"[bold]3/8[/bold] labelled {len(labelled)} modalities: "
        + ", ".join(f"{p.name} ({p.labeler})" for p in labelled)
    )
    for p in plans:
        if p.labeler is None:
            console.print(f"  skipped {p.name}: {escape(p.skip_reason or '')}", highlight=False)
    stand_ins = [p.name for p in plans if p.labeler and p.provenance.get("weights_source") == "random"]
    if stand_ins:
        console.print(
            f"  [yellow]random-init teachers[/yellow] (no cached weights) for {', '.join(stand_ins)}: their features,"
            " and the retrieval and global-embedding numbers built on them, are stand-ins",
            highlight=False,
        )
    (out / RANDOM_INIT_JSON).write_text(json.dumps(random_init_record(registry, plans, "tiny"), indent=2) + "\n")

    t0 = time.perf_counter()
    captions = stored_texts(registry, store)
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    text = build_text_vocabulary(captions, words)
    text.save(out / "vocab" / "text_tokenizer.json")
    for preset in PRESETS:
        build_manifest(registry, preset, text).save(out / "vocab" / f"manifest.{preset}.json")
    store.set_manifest(build_manifest(registry, "tiny", text))
    stage("vocabulary", t0)
    console.print(
        f"[bold]4/8[/bold] vocabulary: {text.size} ids from {len(captions)} stored texts and "
        f"{len(words)} plugin words; manifests in {out / 'vocab'}"
    )

    t0 = time.perf_counter()
    (out / "sequences.md").write_text("\n".join(sequence_examples(registry, store, text, 0)))
    world = SyntheticWorld(WorldConfig(image_size=128), seed=0)
    scene_grid_png([world[i] for i in range(4)], out / "scenes.png")
    info = store.info()
    (out / "store_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    stage("examples and pictures", t0)
    console.print(f"[bold]5/8[/bold] {out / 'sequences.md'}, {out / 'scenes.png'}, {out / 'store_info.json'}")

    t0 = time.perf_counter()
    reports = train_tokenizers(registry, store, out, tokenizer_seconds, console)
    (out / "tokenizers.md").write_text(bound_markdown(reports, tokenizer_seconds))
    store = AlignedStore.open(store.path)  # re-read the parts pre-tokenisation declared
    (out / "sequences.md").write_text("\n".join(sequence_examples(registry, store, text, 0)))  # with item tokens
    stage("tokenizers and pre-tokenisation", t0)
    console.print(
        f"[bold]6/8[/bold] {len(reports)} tokenizers in {out / 'tokenizers'} (reconstructions.png in each), "
        f"bounds in {out / 'tokenizers.md'}, tokens in the store"
    )

    t0 = time.perf_counter()
    summary = train_model(registry, out, train_seconds, console)
    stage("4M training", t0)
    console.print(
        f"[bold]7/8[/bold] tiny 4M: {summary['steps']} steps, validation loss {summary['validation_first']:.3f} -> "
        f"{summary['validation_last']:.3f}; curves, table and pixels-to-all picture in {out / 'model'}"
    )

    t0 = time.perf_counter()
    record = generate_and_retrieve(registry, out, console, scenes=scenes)
    stage("generation and retrieval", t0)
    console.print(f"[bold]8/8[/bold] {generation_line(record)}; pictures in {out / GENERATION_DIR}")

    t0 = time.perf_counter()
    run_photo_section(registry, out, console, workers)  # the photo path: photos -> plan -> whatever teachers run
    stage("photos: ingest and label", t0)

    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    report_path = write_report(out)
    console.print(f"report: {report_path} (open it in a browser)")
    return 1 if failures or registry.problems else 0
