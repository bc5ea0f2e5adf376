"""Maps and embeddings: how well a model predicts image- and global-token targets (the paper's Table 1 rows for
depth, normals, segmentation, features, embeddings).

For every such target with a trained tokenizer, the model generates its tokens from the inputs alone (each target on
its own, not chained, as the paper evaluates), the tokenizer decodes them, and the tokenizer's transform scores the
decoded value against the stored truth with the metrics that transform defines (depth: abs-rel and delta1 after
scale-and-shift alignment; normals: mean angle error; classes: mIoU; edges: F1; features: cosine; embeddings:
cosine, plus kNN retrieval against scene labels). Beside every score sits the **tokenizer bound** on the same
samples, ``decode(encode(truth))``. ``ensemble=N`` fuses N generations per sample with the transform's fusion
(mean maps, class votes), the paper's ensembling row.

One family of :func:`fourm_core.evaluation.evaluate`; nothing here names a modality.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fourm_core.evaluation.common import (
    EvalConfig,
    HeldOut,
    Progress,
    TaskScores,
    generated_ids,
    read_part,
    trained_tokenizer,
)
from fourm_core.spec import ModalityKind

__all__ = ["KINDS", "MapTask", "label_knn", "score", "task"]

#: The kinds this family scores.
KINDS = (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS)
_SOURCE_PART = "source"


@dataclass
class MapTask:
    modality: str
    key: str
    part: str
    array: str
    tokenizer: Any


def task(pipe: Any, name: str, store: Any, inputs: Sequence[str], config: EvalConfig) -> tuple[MapTask | None, str]:
    """``(task, "")`` when ``name`` is predicted by the model as image or global tokens, tokenised by a trained
    tokenizer (not per item), with the truth in the store and not a re-encoding of an input; else ``(None, why)``."""
    from fourm_core.tokenizers.training import source_of

    key = pipe.registry.get(name).model_key(pipe.preset)
    info = pipe.keys.get(key)
    if info is None or info.kind not in KINDS or not info.target:
        return None, f"the model does not predict {key!r} as image or global tokens"
    tokenizer, why = trained_tokenizer(pipe, name)
    if tokenizer is None:
        return None, str(why)
    part_modality, array = source_of(tokenizer.config, name, pipe.registry)
    if tokenizer.config.items is not None or array is None:
        return None, "per-item tokens (evaluated as sequences, not here)"
    if part_modality in inputs:
        return None, f"re-encodes the input {part_modality!r}"
    if f"{part_modality}/raw" not in store.parts():
        return None, f"the store has no {part_modality}/raw"
    return MapTask(name, key, f"{part_modality}/raw", array, tokenizer), ""


def score(pipe: Any, task: MapTask, held: HeldOut) -> TaskScores:
    """The model's and the bound's metrics (and kNN label accuracy for embeddings) on ``held_out``."""
    store, held_out, contents, config, progress = held.store, held.indices, held.contents, held.config, held.progress
    start = time.perf_counter()
    truth = [_truth(store, task, i) for i in held_out]
    predicted = _predict(pipe, task, contents, config, progress)
    bound = task.tokenizer.decode_raw(task.tokenizer.encode_raw(truth))
    transform = task.tokenizer.transform
    scores = TaskScores(task.modality, task.key, len(held_out))
    scores.model = transform.metrics(truth, predicted)
    scores.bound = transform.metrics(truth, bound)
    if config.label_field and transform.resample is None and np.asarray(truth[0]).ndim == 1:
        labels = _labels(store, config.label_field)
        train = list(range(max(0, held_out[0] - config.bank), held_out[0]))
        bank = np.stack([np.asarray(_truth(store, task, i), np.float32) for i in train])
        bank_labels = [labels[i] for i in train]
        query_labels = [labels[i] for i in held_out]
        scores.model.update(label_knn(bank, bank_labels, np.stack(predicted), query_labels))
        scores.bound.update(label_knn(bank, bank_labels, np.stack(bound), query_labels))
    scores.seconds = round(time.perf_counter() - start, 2)
    return scores


def _truth(store: Any, task: MapTask, index: int) -> np.ndarray:
    return np.asarray(read_part(store, task.part, index)[task.array])


def _predict(
    pipe: Any, task: MapTask, contents: Sequence[Mapping[str, Any]], config: EvalConfig, progress: Progress
) -> list[np.ndarray]:
    """Decoded predictions for every sample, each generated ``ensemble`` times and fused per sample by the
    tokenizer's transform."""
    from fourm_core.inference.schedule import StepConfig

    n_tokens = pipe.keys[task.key].max_tokens
    step = StepConfig(
        target=task.key, scheme="maskgit", num_steps=min(config.steps, n_tokens), temperature=config.temperature
    )
    out: list[np.ndarray] = []
    n = config.ensemble
    for ids in generated_ids(pipe, step, contents, config, progress, task.modality, repeat=n):
        decoded = task.tokenizer.decode_raw(ids)
        for s in range(len(ids) // n):
            draws = decoded[s * n : (s + 1) * n]
            out.append(draws[0] if n == 1 else task.tokenizer.transform.fuse(draws))
    return out


def _labels(store: Any, label_field: str) -> list[Any]:
    """The ``label_field`` of every sample's source record (``None`` where absent)."""
    if _SOURCE_PART not in store.parts():
        raise ValueError(f"{store.url} has no {_SOURCE_PART!r} part to read {label_field!r} labels from")
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
