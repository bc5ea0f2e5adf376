"""How well a trained model predicts each modality from given inputs on held-out samples (the shape of the paper's
Table 1, at whatever scale the store has).

For every target modality with a trained image- or global-token tokenizer, the model generates its tokens from the
inputs alone (each target on its own, not chained, as the paper evaluates), the tokenizer decodes them, and the
tokenizer's transform scores the decoded value against the stored truth with the metrics that transform defines
(depth: abs-rel and delta1 after scale-and-shift alignment; normals: mean angle error; classes: mIoU; edges: F1;
features: cosine; embeddings: cosine, plus kNN retrieval against scene labels). Beside every score sits the
**tokenizer bound** on the same samples, ``decode(encode(truth))``: no model that predicts tokens can beat it, so the
gap between the two is what the model still has to learn. ``ensemble=N`` fuses N generations per sample with the
transform's fusion (mean maps, class votes), the paper's ensembling row.

Nothing here names a modality: targets, truth arrays, metrics and fusion all come from the registry and the
tokenizers' configs, so a plugin's new modality is evaluated as soon as its tokenizer is trained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fourm_core.spec import ModalityKind

__all__ = [
    "EvalConfig",
    "TaskScores",
    "evaluate",
    "held_out_split",
    "input_contents",
    "input_names",
    "label_knn",
    "prepare",
    "scores_markdown",
]

_IMAGE_KINDS = ("image_tokens", "global_tokens")
_SOURCE_PART = "source"


class EvalConfig(BaseModel):
    """What to evaluate and how to sample. ``inputs`` ``None``: the model's pixel modalities (the paper evaluates
    from RGB). ``targets`` ``None``: every modality the model predicts whose tokenizer
    is trained and whose truth the store holds (except those that only re-encode an input, such as RGB tokens from
    RGB pixels). ``samples``: the last N samples of the store, the split a training run holds out
    (``val_samples``). ``steps`` / ``temperature``: the MaskGIT schedule per target (1 step at temperature 0 is the
    deterministic one-pass prediction). ``label_field``: a field of the store's source part used as the class of
    each sample for kNN retrieval with predicted global embeddings (``None``: no kNN); ``bank``: how many training
    samples (before the held-out ones) form the kNN bank."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] | None = Field(None, min_length=1)
    targets: list[str] | None = None
    samples: int = Field(64, ge=1)
    steps: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    ensemble: int = Field(1, ge=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    label_field: str | None = "scene_type"
    bank: int = Field(2000, ge=1)


@dataclass
class TaskScores:
    """One target's scores on ``n`` held-out samples: the model's, the tokenizer bound's, and when a kNN bank was
    built, retrieval top-1 / top-5 against the sample labels for both."""

    modality: str
    key: str
    n: int
    model: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def evaluate(
    model: Any,
    store_path: str | os.PathLike[str],
    config: EvalConfig | None = None,
    progress: Any = None,
) -> dict[str, TaskScores]:
    """Score ``model`` (a :class:`~.inference.api.FourM`) on the held-out samples of a store, per target modality.

    ``progress``: optional callable ``(modality, done, total)``. Raises ``ValueError`` naming the problem when an
    input is missing from the store, a named target cannot be evaluated, or the store is too small."""
    import time

    config, store, held_out, inputs = prepare(model, store_path, config)
    tasks = _tasks(model, store, config, inputs)
    contents = input_contents(model, store_path, held_out, inputs)
    labels = _labels(store, config.label_field) if config.label_field else None
    out: dict[str, TaskScores] = {}
    for task in tasks:
        start = time.perf_counter()
        truth = [_truth(store, task, i) for i in held_out]
        predicted = _predict(model, task, contents, config, progress)
        bound = task.tokenizer.decode_raw(task.tokenizer.encode_raw(truth))
        transform = task.tokenizer.transform
        scores = TaskScores(task.modality, task.key, len(held_out))
        scores.model = transform.metrics(truth, predicted)
        scores.bound = transform.metrics(truth, bound)
        if labels is not None and transform.resample is None and np.asarray(truth[0]).ndim == 1:
            train = [i for i in range(max(0, held_out[0] - config.bank), held_out[0])]
            bank = np.stack([np.asarray(_truth(store, task, i), np.float32) for i in train])
            bank_labels = [labels[i] for i in train]
            query_labels = [labels[i] for i in held_out]
            scores.model.update(label_knn(bank, bank_labels, np.stack(predicted), query_labels))
            scores.bound.update(label_knn(bank, bank_labels, np.stack(bound), query_labels))
        scores.seconds = round(time.perf_counter() - start, 2)
        out[task.modality] = scores
    return out


@dataclass
class _Task:
    modality: str
    key: str
    part: str
    array: str
    tokenizer: Any


def prepare(
    model: Any, store_path: str | os.PathLike[str], config: EvalConfig | None
) -> tuple[EvalConfig, Any, list[int], list[str]]:
    """``(config, store, held-out indices, input modalities)``: what every evaluation starts from."""
    from fourm_core.storage.store import AlignedStore

    config = config or EvalConfig()
    store = AlignedStore.open(store_path, mode="r")
    return config, store, held_out_split(store, config.samples), input_names(model, config.inputs)


def held_out_split(store: Any, samples: int) -> list[int]:
    """The last ``samples`` indices of the store (what a training run's ``val_samples`` holds out)."""
    if samples >= store.n_samples:
        raise ValueError(f"{store.path}: {samples} held-out samples of {store.n_samples}; keep some to train")
    return list(range(store.n_samples - samples, store.n_samples))


def input_names(model: Any, inputs: Sequence[str] | None) -> list[str]:
    """The given input modalities, or by default every pixel modality the model takes as input."""
    if inputs is not None:
        return list(inputs)
    info = model.network.modality_info
    found = []
    for m in model.registry.modalities():
        key = m.model_key(model.preset)
        if m.spec.kind == ModalityKind.PIXELS and key in info and info[key].get("input", True):
            found.append(m.name)
    if not found:
        raise ValueError("the model takes no pixel modality as input: name the evaluation inputs")
    return found


def input_contents(
    model: Any, store_path: str | os.PathLike[str], indices: Sequence[int], inputs: Sequence[str]
) -> list[dict[str, Any]]:
    """Per sample the model-key contents of ``inputs`` (full image, built exactly as in training)."""
    from fourm_core.data.pipeline import SampleBuilder, open_store_dataset
    from fourm_core.inference.requests import resolve

    keys = [resolve(model.registry, model.preset, name).key for name in inputs]
    dataset = open_store_dataset(store_path, model.registry, crop=0)
    builder = SampleBuilder(model.registry, model.preset, model.vocabulary)
    contents = []
    for index in indices:
        built = builder(dataset[index])
        missing = [k for k in keys if k not in built]
        if missing:
            raise ValueError(f"sample {index} of {store_path} has no input {', '.join(missing)}")
        contents.append({k: built[k] for k in keys})
    return contents


def _tasks(model: Any, store: Any, config: EvalConfig, inputs: Sequence[str]) -> list[_Task]:
    """The evaluable targets: predicted by the model, tokenised by a trained tokenizer of image or global tokens
    (not per-item), with the truth in the store, and not a re-encoding of an input."""
    from fourm_core.tokenizers.training import source_of

    registry, preset, info = model.registry, model.preset, model.network.modality_info
    names = config.targets if config.targets is not None else registry.names()
    input_modalities = set(inputs)
    tasks = []
    for name in names:
        modality = registry.get(name)
        key = modality.model_key(preset)
        explicit = config.targets is not None
        why = None
        if key not in info or info[key]["type"] not in _IMAGE_KINDS or not info[key].get("target", True):
            why = f"the model does not predict {key!r} as image or global tokens"
        elif model.tokenizers is None:
            why = "no tokenizer directory"
        else:
            try:
                tokenizer = registry.tokenizer(name, preset, model.tokenizers)
            except Exception as exc:  # noqa: BLE001 (missing tokenizer: skipped, or reported when asked for)
                tokenizer, why = None, f"no trained tokenizer ({exc.__cause__ or exc})"
            if tokenizer is not None:
                part_modality, array = source_of(tokenizer.config, name, registry)
                if tokenizer.config.items is not None or array is None:
                    why = "per-item tokens (evaluated as sequences, not here)"
                elif part_modality in input_modalities:
                    why = f"re-encodes the input {part_modality!r}"
                elif f"{part_modality}/raw" not in store.parts():
                    why = f"the store has no {part_modality}/raw"
                elif not getattr(tokenizer, "trained", False):
                    why = "its tokenizer is not trained"
        if why is None:
            tasks.append(_Task(name, key, f"{part_modality}/raw", array, tokenizer))
        elif explicit:
            raise ValueError(f"{name}: cannot be evaluated: {why}")
    if not tasks:
        raise ValueError("nothing to evaluate: no target has a trained image or global tokenizer and stored truth")
    return tasks


def _truth(store: Any, task: _Task, index: int) -> np.ndarray:
    row = store.read(task.part, index)
    if row is None:
        raise ValueError(f"sample {index}: {task.part} is missing (the labeler failed on it)")
    return np.asarray(row[task.array])


def _predict(
    model: Any, task: _Task, contents: list[Mapping[str, Any]], config: EvalConfig, progress: Any
) -> list[np.ndarray]:
    """Decoded predictions for every sample: batches of ``batch_size`` samples, each repeated ``ensemble`` times
    and fused per sample by the tokenizer's transform."""
    from fourm_core.inference.sampler import GenerationSampler
    from fourm_core.inference.schedule import StepConfig

    n_tokens = int(model.network.modality_info[task.key]["max_tokens"])
    step = StepConfig(
        target=task.key, scheme="maskgit", num_steps=min(config.steps, n_tokens), temperature=config.temperature
    )
    sampler = GenerationSampler(model.network)
    transform = task.tokenizer.transform
    out: list[np.ndarray] = []
    for start in range(0, len(contents), config.batch_size):
        chunk = contents[start : start + config.batch_size]
        repeated = [c for c in chunk for _ in range(config.ensemble)]
        ids = sampler.generate(repeated, [step], seed=config.seed + start)[task.key]
        decoded = task.tokenizer.decode_raw(ids.cpu())
        for s in range(len(chunk)):
            draws = decoded[s * config.ensemble : (s + 1) * config.ensemble]
            out.append(draws[0] if config.ensemble == 1 else transform.fuse(draws))
        if progress is not None:
            progress(task.modality, min(start + config.batch_size, len(contents)), len(contents))
    return out


def _labels(store: Any, label_field: str) -> list[Any]:
    """The ``label_field`` of every sample's source record (``None`` where absent)."""
    if _SOURCE_PART not in store.parts():
        raise ValueError(f"{store.path} has no {_SOURCE_PART!r} part to read {label_field!r} labels from")
    labels: list[Any] = []
    for block in range(store.n_blocks):
        for row in store.read_block(_SOURCE_PART, block):
            labels.append(None if row is None else row.get(label_field))
    return labels


def label_knn(bank: np.ndarray, bank_labels: Sequence[Any], queries: np.ndarray, labels: Sequence[Any]) -> dict:
    """kNN classification by cosine similarity: the share of queries whose nearest bank sample has the query's
    label (top-1) and whose five nearest include one with it (top-5).

    Exact search by one matrix product (a few thousand vectors); the index library is for user-facing retrieval."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)

    order = np.argsort(-(unit(queries) @ unit(bank).T), axis=1)[:, :5]
    hits = np.array([[bank_labels[j] == label for j in row] for row, label in zip(order, labels, strict=True)])
    return {"knn_label_top1": float(hits[:, 0].mean()), "knn_label_top5": float(hits.any(axis=1).mean())}


def scores_markdown(
    rows: Mapping[str, Mapping[str, TaskScores]], metrics: Mapping[str, Sequence[str]] | None = None
) -> str:
    """A markdown table: one row per evaluated model (``rows``: row name -> its scores), one column per
    (modality, metric), and a ``tokenizer bound`` row (each task's bound from the first row that has it).
    ``metrics``: the columns, modality -> metric names, in order (default: every metric of the first row)."""
    first = next(iter(rows.values()))
    wanted = metrics or {m: list(s.model) for m, s in first.items()}
    columns = [(m, k) for m, names in wanted.items() for k in names]
    lines = ["| model | " + " | ".join(f"{m} {k}" for m, k in columns) + " |", "|" + "---|" * (len(columns) + 1)]

    def cell(scores: Mapping[str, TaskScores] | None, m: str, k: str, bound: bool = False) -> str:
        if scores is None or m not in scores:
            return "-"
        value = (scores[m].bound if bound else scores[m].model).get(k)
        return "-" if value is None else f"{value:.3f}"

    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(scores, m, k) for m, k in columns) + " |")
    bounds = [cell(next((s for s in rows.values() if m in s), None), m, k, bound=True) for m, k in columns]
    lines.append("| tokenizer bound | " + " | ".join(bounds) + " |")
    return "\n".join(lines) + "\n"
