"""``fourm demo``: the most complete real job the project can run on the embedded default.

Today: discover the plugins and run the conformance suite on each modality; render the synthetic world into a store;
pseudo-label every modality that has a labeler; train the shared WordPiece vocabulary on the store's captions and
write the vocabulary manifests; serialize one labelled sample of every sequence modality in the official format with
its token ids; draw a picture of a few scenes' modalities; train every learned tokenizer on the store with a short
time budget, measure its bound on held-out scenes and pre-tokenise the store; train a tiny 4M on the store and draw
its one-pass predictions from pixels; generate every target modality from the pixels of a few held-out scenes, chain
a caption into a global embedding into RGB tokens, and retrieve scenes by predicted global embeddings; write
``report.html`` (:mod:`fourm_core.apps.demo.report`). Stages reuse what a previous run wrote (the store resumes, trained
tokenizers, the trained model and the generations are kept).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
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
#: scenes at the end of the store that the 4M's training holds out (its validation set)
DEMO_VAL_SAMPLES = 32
#: held-out scenes the report shows (every target generated from their pixels, retrieval queries from them)
DEMO_SCENES = 3
#: of which the first this many also run the text -> global embedding -> RGB tokens chain
DEMO_CHAINS = 2
#: retrieval hits per query
DEMO_HITS = 5
#: stage 8's folder in the demo's output and its record (what the report reads)
GENERATION_DIR = "generation"
GENERATION_JSON = "generation.json"


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
    from fourm_core.model.network import FourMNetwork
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
        "tokenizers": str(out / "tokenizers"),  # recorded in final/fourm.json: fm.FourM.from_pretrained(run) works
        "datasets": [{"name": "world", "store": str(out / "world.zarr"), "val_samples": DEMO_VAL_SAMPLES}],
        "input_tokens": 128,
        "target_tokens": 128,
        "model": {"size": "tiny", "preset": "tiny", "overrides": DEMO_MODEL},
        "optim": {"lr": 1e-3, "min_lr": 1e-5},
        "engine": {"micro_batch_size": 16},
    }
    steps = max(5, steps_for_seconds(RunConfig.model_validate({**base, "schedule": {"steps": 1}}), seconds, registry))
    config = RunConfig.model_validate(
        {
            **base,
            "schedule": {"steps": steps, "warmup_steps": max(1, steps // 12)},
            "eval_every": max(1, steps // 8),
            "checkpoint_every": max(1, steps // 4),
            "log_every": max(1, steps // 40),
        }
    )
    result = train(config, registry)
    records = read_log(run / LOG_NAME)
    curves_svg(records, run / "curves.svg")
    (run / "validation.md").write_text(validation_table(records, every=2) + "\n")
    data = TrainingData(config, registry, TextVocabulary.load(config.vocabulary))
    model = FourMNetwork.from_pretrained(run / FINAL)
    accuracy = probe_figure(model, data, registry, out / "tokenizers", run / "pixels2all.png", n=6)
    summary = {
        "steps": result.steps,
        "validation_first": result.validation[0]["loss"],
        "validation_last": result.validation[-1]["loss"],
        "probe_token_accuracy": accuracy,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _stem(name: str) -> str:
    """A file stem for a model key (keys carry ``@``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _flat_ids(content: Any) -> list[int]:
    """Token ids of a sequence content (a tensor, or chunks of them for chunk-masked keys), up to ``[EOS]``,
    padding dropped."""
    from fourm_core.data.masking import EOS_ID, PAD_ID

    if isinstance(content, (list, tuple)):
        ids = [i for chunk in content for i in _flat_ids_raw(chunk)]
    else:
        ids = _flat_ids_raw(content)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return [i for i in ids if i != PAD_ID]


def _flat_ids_raw(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1).tolist()]


def _raw_value(registry: Registry, store: Any, modality: str, index: int) -> Any:
    """The stored raw value of ``modality`` for sample ``index`` (its first raw array; for a tokenizer of another
    modality's array, such as RGB tokens, that array), or ``None`` when the sample has none."""
    spec = registry.get(modality).spec
    raw = [a.name for a in spec.storage if a.form == "raw"]
    part, name = f"{modality}/raw", raw[0] if raw else None
    if name is None and spec.tokenizer is not None and spec.tokenizer.source:
        source, _, name = spec.tokenizer.source.partition(".")
        part = f"{source}/raw"
    if name is None or part not in store.parts() or store.state(part)[index] != 1:
        return None
    value = store.read(part, index)
    return value.get(name) if isinstance(value, dict) else None


def _cosine(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    x, y = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return round(float(x @ y) / norm, 4) if norm else None


def _save_png(picture: np.ndarray, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(picture)).save(path)
    return path.as_posix()


def _model_stamp(weights: Path) -> str:
    stat = weights.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _pictures_of(record: Any) -> list[str]:
    """Every picture file a stage-8 record names (to tell whether a cached record is complete)."""
    if isinstance(record, dict):
        return [p for k, v in record.items() for p in ([v] if k == "picture" and v else _pictures_of(v))]
    if isinstance(record, list):
        return [p for v in record for p in _pictures_of(v)]
    return []


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch (and numpy's BLAS, when ``threadpoolctl`` is installed) on one thread for the block. Generation runs
    batches of a few samples through a tiny model and draws small pictures: the ops are too small to split, and on a
    shared 2-core machine two spinning threads made stage 8 about 20x slower (13.6 s instead of 0.7 s per target,
    measured while other jobs ran); one thread was faster in every measurement, busy machine or not."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only the numpy side stays multi-threaded
        blas: Any = contextlib.nullcontext()
    else:
        blas = threadpool_limits(1)
    try:
        with blas:
            yield
    finally:
        torch.set_num_threads(threads)


def _demo_keys(registry: Registry, info: dict[str, Any], preset: str) -> dict[str, str | None]:
    """The model keys stage 8 uses, chosen by kind and spec, never by name: the pixel input, a text sequence input
    (one stored free-text array), the first global-token key, and the image-token key whose tokenizer encodes the
    pixel input's own array (RGB tokens)."""
    from fourm_core.spec import ModalityKind, Vocabulary

    members = registry.model_keys(preset)
    pixels = next((k for k, v in info.items() if v["type"] == ModalityKind.PIXELS.value and v.get("input", True)), None)
    text = None
    for key, meta in info.items():
        spec = members[key][0].spec
        raw = [a for a in spec.storage if a.form == "raw"]
        if (
            meta["type"] == ModalityKind.SEQUENCE.value
            and meta.get("input", True)
            and len(members[key]) == 1
            and spec.vocabulary == Vocabulary.TEXT
            and len(raw) == 1
            and raw[0].dtype == "text"
        ):
            text = key
            break
    glob = next((k for k, v in info.items() if v["type"] == ModalityKind.GLOBAL_TOKENS.value), None)
    image = None
    if pixels is not None:
        prefix = f"{members[pixels][0].name}."
        for key, meta in info.items():
            tok = members[key][0].spec.tokenizer
            if (
                meta["type"] == ModalityKind.IMAGE_TOKENS.value
                and tok is not None
                and (tok.source or "").startswith(prefix)
            ):
                image = key
                break
    return {"pixels": pixels, "text": text, "global": glob, "image": image}


def _generation_line(record: dict[str, Any]) -> str:
    """Stage 8 in one console line."""
    scenes = record.get("scenes", [])
    targets = len(scenes[0]["targets"]) if scenes else 0
    parts = [f"{targets} targets generated from pixels for {len(scenes)} held-out scenes"]
    if record.get("chains"):
        parts.append(f"{len(record['chains'])} text -> global -> image chains")
    retrieval = record.get("retrieval")
    if retrieval:
        own = [q for q in retrieval["queries"] if q["hits"] and q["hits"][0]["index"] == q["scene"]]
        parts.append(
            f"retrieval over {retrieval['size']} scenes by {retrieval['key']} ({len(own)}/"
            f"{len(retrieval['queries'])} queries find their own scene first)"
        )
    cached = " (reused)" if record.get("cached") else f" in {record.get('seconds', 0):.0f}s"
    return ", ".join(parts) + cached


def _draw_sequence(
    registry: Registry, preset: str, req: Any, text: str | None, image: np.ndarray, tokenizers: Path
) -> np.ndarray | None:
    """The picture the modality's decoder draws of a stored sequence text (``None`` when there is none)."""
    from fourm_core.viz.rendering import RenderContext, render_output, tokenizer_lookup

    if not text:
        return None
    try:
        value = registry.key_serializer(req.key, preset).parse(text)
    except Exception:  # noqa: BLE001 (a stored text the codec cannot read back is shown as text only)
        return None

    context = RenderContext(image=image, preset=preset, tokenizer=tokenizer_lookup(registry, preset, tokenizers))
    return render_output(registry, req.modality, value, context)


#: draws fused per scene in the demo's ensembling row (the quality benchmark uses 10)
DEMO_ENSEMBLE = 4


def _evaluate(
    registry: Registry, network: Any, preset: str, vocabulary: Any, tokenizers: Path, store: Path, samples: int
) -> dict[str, dict[str, Any]]:
    """The Table 1 shape for the demo's own model on its held-out scenes: every evaluable target predicted from
    the pixels (one pass), the same with :data:`DEMO_ENSEMBLE` draws fused, and the tokenizer bound
    (:mod:`fourm_core.evaluation.maps`); rows of ``{modality: {key, n, model, bound}}``."""
    from fourm_core.evaluation.maps import EvalConfig, evaluate
    from fourm_core.inference.api import FourM as Api
    from fourm_core.storage.store import AlignedStore

    model = Api(network, registry, preset, vocabulary, tokenizers)
    bank = max(1, AlignedStore.open(store, mode="r").n_samples - samples)

    def rows(**fields: Any) -> dict[str, Any]:
        got = evaluate(model, store, EvalConfig(samples=samples, bank=bank, **fields))
        return {m: {"key": s.key, "n": s.n, "model": s.model, "bound": s.bound} for m, s in got.items()}

    return {"one pass": rows(), f"ensemble of {DEMO_ENSEMBLE}": rows(ensemble=DEMO_ENSEMBLE, temperature=0.7)}


def _generate_and_retrieve(
    registry: Registry,
    out: Path,
    console: Console,
    scenes: int = DEMO_SCENES,
    chains: int = DEMO_CHAINS,
    hits: int = DEMO_HITS,
) -> dict[str, Any]:
    """Stage 8, with the demo's trained 4M on held-out scenes of the demo store: every target modality generated
    from the pixels (ground truth, tokenizer reconstruction and prediction side by side, one picture per scene and
    target; texts and embedding similarities for sequences and global tokens); a chain text -> global embedding ->
    RGB tokens from the scenes' stored texts; retrieval by predicted global embeddings over the store, queried by a
    scene's pixels and by its text. Writes pictures under ``generation/`` and ``generation/generation.json`` (paths
    relative to ``out``); a record made with the same model and settings is reused.

    Generation from the pixels runs one batch of all scenes per target through the parts
    :func:`~fourm_core.inference.outputs.run_generation` composes (``build_inputs``, ``default_schedule``, the
    sampler, ``decode_outputs``; same defaults), since ``run_generation`` takes one sample; the chain calls
    ``run_generation`` with a list schedule."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fourm_core.inference.outputs import decode_outputs, run_generation
    from fourm_core.inference.requests import (
        GenerationRequestError,
        build_inputs,
        default_schedule,
        infer_preset,
        validate_targets,
    )
    from fourm_core.inference.retrieval import build_index, describe_samples, retrieve, store_inputs, text_inputs
    from fourm_core.inference.sampler import GenerationSampler
    from fourm_core.inference.schedule import StepConfig
    from fourm_core.model.network import FourMNetwork
    from fourm_core.spec import ModalityKind
    from fourm_core.storage.store import AlignedStore
    from fourm_core.training.engine import FINAL
    from fourm_core.training.report import tile_row
    from fourm_core.viz.pictures import picture
    from fourm_core.vocab import TextVocabulary

    folder = out / GENERATION_DIR
    record_path = folder / GENERATION_JSON
    weights = out / "model" / FINAL / "model.safetensors"
    # ``record``: the layout of generation.json; a record written by an older fourm is made again
    stamp = {"model": _model_stamp(weights), "scenes": scenes, "chains": chains, "hits": hits, "record": 2}
    if record_path.exists():
        cached = json.loads(record_path.read_text())
        if cached.get("stamp") == stamp and all((out / p).exists() for p in _pictures_of(cached)):
            cached["cached"] = True
            return cached
    start = time.perf_counter()
    store_path, tokenizers = out / "world.zarr", out / "tokenizers"
    store = AlignedStore.open(store_path, mode="r")
    model = FourMNetwork.from_pretrained(weights.parent).eval()
    info = model.modality_info
    preset = infer_preset(registry, info)
    members = registry.model_keys(preset)
    vocabulary = TextVocabulary.load(out / "vocab" / "text_tokenizer.json")
    keys = _demo_keys(registry, info, preset)
    if keys["pixels"] is None:
        raise ValueError("the demo model has no pixel input to generate from")
    pixel_modality = members[keys["pixels"]][0].name
    config_path = out / "model" / "config.yaml"  # JSON written by the training run
    val = json.loads(config_path.read_text())["datasets"][0]["val_samples"] if config_path.exists() else 0
    n = store.n_samples
    held_out = list(range(n - (val or DEMO_VAL_SAMPLES), n))[:scenes]

    generable = (ModalityKind.IMAGE_TOKENS.value, ModalityKind.GLOBAL_TOKENS.value, ModalityKind.SEQUENCE.value)
    requested, skipped = [], {}
    for key, meta in info.items():
        if meta["type"] not in generable or not meta.get("target", True):
            continue
        try:
            requested += validate_targets(model, registry, preset, [key], tokenizers, [keys["pixels"]], vocabulary)
        except GenerationRequestError as exc:
            skipped[key] = str(exc)
    targets = [r.key for r in requested]
    parts = set(store.parts())
    keys["global"] = next(
        (
            k
            for k in targets
            if info[k]["type"] == ModalityKind.GLOBAL_TOKENS.value and f"{members[k][0].name}/raw" in parts
        ),
        keys["global"],
    )
    tokenizer = {
        k: registry.tokenizer(members[k][0].name, preset, tokenizers)
        for k in targets
        if info[k]["type"] != ModalityKind.SEQUENCE.value
    }
    texts = describe_samples(store_path, registry, range(n))
    thumbs: dict[int, str] = {}

    def thumb(index: int) -> str:
        if index not in thumbs:
            raw = _raw_value(registry, store, pixel_modality, index)
            thumbs[index] = _save_png(picture("color", raw), folder / "store" / f"{index}.png")
        return Path(thumbs[index]).relative_to(out).as_posix()

    def rel(path: str) -> str:
        return Path(path).relative_to(out).as_posix()

    chain_ok = (
        all(keys[k] for k in ("text", "global", "image")) and keys["global"] in targets and keys["image"] in targets
    )
    retrieval_ok = keys["global"] in targets and f"{members[keys['global']][0].name}/raw" in store.parts()
    n_chains = min(chains, len(held_out)) if chain_ok else 0
    total = len(held_out) * len(targets) + n_chains + (len(held_out) * 2 if retrieval_ok else 0)
    progress = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    record: dict[str, Any] = {"stamp": stamp, "preset": preset, "keys": keys, "skipped": skipped, "scenes": []}
    torch.manual_seed(0)
    sampler = GenerationSampler(model)
    with progress, _one_thread():
        task = progress.add_task("generation from pixels", total=total)
        contents = [store_inputs(store_path, i, registry, vocabulary, preset=preset) for i in held_out]
        inputs = [
            dict(
                build_inputs(
                    registry,
                    preset,
                    vocabulary,
                    {pixel_modality: _raw_value(registry, store, pixel_modality, i)},
                    tokenizers,
                    model=model,
                )
            )
            for i in held_out
        ]
        scenes_out = [{"index": i, "text": texts.get(i, ""), "picture": thumb(i), "targets": []} for i in held_out]
        images = [np.asarray(_raw_value(registry, store, pixel_modality, i)) for i in held_out]
        record["target_seconds"] = {}
        for req in requested:
            key = req.key
            progress.update(task, description=f"from pixels: {key}")
            t0 = time.perf_counter()
            schedule = default_schedule(info, [req], steps=8, temperature=0.5)
            ids = sampler.generate(inputs, schedule, seed=0)
            for s, (index, scene) in enumerate(zip(held_out, scenes_out, strict=True)):
                output = decode_outputs(registry, preset, vocabulary, ids, [req], tokenizers, s, images[s])[req.name]
                entry: dict[str, Any] = {"key": key, "kind": info[key]["type"]}
                if key in tokenizer:
                    truth = _raw_value(registry, store, req.modality, index)
                    stored = contents[s].get(key)
                    recon = tokenizer[key].decode_raw(torch.as_tensor(stored)[None])[0] if stored is not None else None
                    if output.picture() is not None:
                        tiles = [
                            picture(output.transform, np.asarray(v)) if v is not None else None
                            for v in (truth, recon, output.array)
                        ]
                        blank = np.full((*output.picture().shape[:2], 3), 200, np.uint8)
                        path = folder / f"scene_{index}" / f"{_stem(key)}.png"
                        entry["picture"] = rel(
                            _save_png(tile_row([blank if t is None else t for t in tiles], 96), path)
                        )
                    else:  # a vector: how close the prediction and the reconstruction come to the stored one
                        entry["cosine_prediction"] = _cosine(output.array, truth)
                        entry["cosine_reconstruction"] = _cosine(recon, truth)
                else:
                    stored = contents[s].get(key)
                    entry["truth"] = (
                        " ".join(vocabulary.decode(_flat_ids(stored)).split()) if stored is not None else None
                    )
                    entry["prediction"] = output.text
                    entry["parsed"] = output.parse_error is None
                    drawn = [
                        _draw_sequence(registry, preset, req, entry["truth"], images[s], tokenizers),
                        output.picture(),
                    ]
                    if any(d is not None for d in drawn):  # stored | generated, as the plugin draws them
                        blank = np.full((*next(d for d in drawn if d is not None).shape[:2], 3), 200, np.uint8)
                        path = folder / f"scene_{index}" / f"{_stem(key)}.png"
                        entry["picture"] = rel(
                            _save_png(tile_row([blank if d is None else d for d in drawn], 96), path)
                        )
                scene["targets"].append(entry)
                progress.advance(task)
            record["target_seconds"][key] = round(time.perf_counter() - t0, 3)
        record["scenes"] = scenes_out

        index_meta: dict[str, Any] = {}
        if retrieval_ok:
            gkey = keys["global"]
            gmod = members[gkey][0].name
            emb_index = build_index(store_path, gmod, registry, preset)
            emb_index.save(folder / "world.index")
            index_meta = {"key": gkey, "size": len(emb_index), "file": rel(str(folder / "world.index"))}

            def hit_list(found: list[Any]) -> list[dict[str, Any]]:
                return [
                    {
                        "index": h.index,
                        "similarity": round(h.similarity, 4),
                        "picture": thumb(h.index),
                        "text": texts.get(h.index, ""),
                        "held_out": h.index >= n - (val or DEMO_VAL_SAMPLES),
                    }
                    for h in found
                ]

            queries = []
            for index in held_out:
                progress.update(task, description=f"retrieval: scene {index}")
                query = store_inputs(store_path, index, registry, vocabulary, keys=[keys["pixels"]], preset=preset)
                found = retrieve(model, query, emb_index, tokenizer[gkey], k=hits)
                queries.append({"by": keys["pixels"], "scene": index, "picture": thumb(index), "hits": hit_list(found)})
                progress.advance(task)
                text = texts.get(index, "")
                if keys["text"] and text:
                    query = text_inputs(registry, preset, vocabulary, {keys["text"]: text})
                    found = retrieve(model, query, emb_index, tokenizer[gkey], k=hits)
                    queries.append({"by": keys["text"], "scene": index, "text": text, "hits": hit_list(found)})
                progress.advance(task)
            record["retrieval"] = {**index_meta, "queries": queries}

        record["chains"] = []
        for index in held_out[:n_chains]:
            progress.update(task, description=f"chain: scene {index}")
            text = texts.get(index, "")
            gkey, ikey = keys["global"], keys["image"]
            steps = [
                StepConfig(
                    target=gkey,
                    scheme="maskgit",
                    num_steps=min(8, int(info[gkey]["max_tokens"])),
                    temperature=0.5,
                    temperature_schedule="linear",
                ),
                StepConfig(
                    target=ikey,
                    scheme="maskgit",
                    num_steps=min(8, int(info[ikey]["max_tokens"])),
                    temperature=0.5,
                    temperature_schedule="linear",
                    cfg_scale=2.0,
                ),
            ]
            t0 = time.perf_counter()
            result = run_generation(
                model,
                registry,
                preset,
                vocabulary,
                {members[keys["text"]][0].name: text},
                [gkey, ikey],
                tokenizers,
                schedule=steps,
                seed=index,
            )
            generated = result[ikey].picture()
            truth = picture("color", _raw_value(registry, store, pixel_modality, index))
            path = folder / f"chain_{index}.png"
            chain: dict[str, Any] = {
                "scene": index,
                "text": text,
                "steps": [s.model_dump(exclude_defaults=True) for s in steps],
                "picture": rel(_save_png(tile_row([truth, generated], 96), path)),
            }
            chain["seconds"] = round(time.perf_counter() - t0, 3)
            if retrieval_ok:
                ids, sims = emb_index.search(np.asarray(result[gkey].array, np.float32).reshape(-1), 1)
                chain["nearest"] = {
                    "index": int(ids[0]),
                    "similarity": round(float(sims[0]), 4),
                    "picture": thumb(int(ids[0])),
                    "text": texts.get(int(ids[0]), ""),
                }
            record["chains"].append(chain)
            progress.advance(task)
        progress.update(task, description="held-out evaluation")
        record["evaluation"] = _evaluate(
            registry, model, preset, vocabulary, tokenizers, store_path, val or DEMO_VAL_SAMPLES
        )
    record["seconds"] = round(time.perf_counter() - start, 2)
    folder.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


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
    plans = label_store(store.path, registry=registry, workers=workers)
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
        f"[bold]4/8[/bold] vocabulary: {text.size} ids from {len(captions)} stored texts and "
        f"{len(words)} plugin words; manifests in {out / 'vocab'}"
    )

    t0 = time.perf_counter()
    (out / "sequences.md").write_text("\n".join(_sequence_examples(registry, store, text, 0)))
    world = SyntheticWorld(WorldConfig(image_size=128), seed=0)
    scene_grid_png([world[i] for i in range(4)], out / "scenes.png")
    info = store.info()
    (out / "store_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    stage("examples and pictures", t0)
    console.print(f"[bold]5/8[/bold] {out / 'sequences.md'}, {out / 'scenes.png'}, {out / 'store_info.json'}")

    t0 = time.perf_counter()
    reports = _tokenizers(registry, store, out, tokenizer_seconds, console)
    (out / "tokenizers.md").write_text(_bound_markdown(reports, tokenizer_seconds))
    store = AlignedStore.open(store.path)  # re-read the parts pre-tokenisation declared
    (out / "sequences.md").write_text("\n".join(_sequence_examples(registry, store, text, 0)))  # with item tokens
    stage("tokenizers and pre-tokenisation", t0)
    console.print(
        f"[bold]6/8[/bold] {len(reports)} tokenizers in {out / 'tokenizers'} (reconstructions.png in each), "
        f"bounds in {out / 'tokenizers.md'}, tokens in the store"
    )

    t0 = time.perf_counter()
    summary = _train_model(registry, out, train_seconds, console)
    stage("4M training", t0)
    console.print(
        f"[bold]7/8[/bold] tiny 4M: {summary['steps']} steps, validation loss {summary['validation_first']:.3f} -> "
        f"{summary['validation_last']:.3f}; curves, table and pixels-to-all picture in {out / 'model'}"
    )

    t0 = time.perf_counter()
    record = _generate_and_retrieve(registry, out, console, scenes=scenes)
    stage("generation and retrieval", t0)
    console.print(f"[bold]8/8[/bold] {_generation_line(record)}; pictures in {out / GENERATION_DIR}")

    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    report_path = write_report(out)
    console.print(f"report: {report_path} (open it in a browser)")
    return 1 if failures or registry.problems else 0
