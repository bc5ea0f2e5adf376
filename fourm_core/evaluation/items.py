"""Item sequences: held-out evaluation of sequence modalities whose items carry per-item tokenizer codes (the
paper's 3D-pose error and instance segmentation rows of Table 1, at whatever scale the store has).

For every such target (a sequence key whose tokenizer config has ``items`` and whose serializer implements
:class:`~fourm_core.serialization.ItemMatching`), the model generates the string from the inputs alone
(autoregressively, batched), the serializer parses it (an unparsable string has no items and lowers
``parse_rate``), the item tokenizer decodes every predicted item's codes, and predictions are matched to the stored
items greedily by box IoU (highest first, each used once, IoU >= ``iou``). Reported:

* ``recall`` (matched / true items), ``precision`` (matched / predicted items), ``parse_rate`` and ``matched``;
* on the matched pairs, the tokenizer transform's metrics (in the item's stored form, e.g. mask IoU of the
  box-cropped square masks) and the tokenizer config's ``evaluator`` (e.g. a joint position error); absent when
  nothing matched, so every reported number is finite.

Beside them, the **tokenizer bound** on the same true items, ``decode(encode(items))``, with the same metrics
(recall and precision are 1 by construction and not reported). Scoring given ids (:func:`score_item_ids`) is
separate from generating them, so a test can feed the true serialised sequences and must get the bound back.

One family of :func:`fourm_core.evaluation.evaluate`; nothing here names a modality.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fourm_core.evaluation import common
from fourm_core.evaluation.common import EvalConfig, HeldOut, Progress, TaskScores
from fourm_core.spec import ModalityKind

__all__ = [
    "KINDS",
    "ItemTask",
    "ItemTruth",
    "box_iou",
    "item_bound",
    "match_boxes",
    "score",
    "score_item_ids",
    "sequence_text",
    "task",
]

#: The kinds this family scores.
KINDS = (ModalityKind.SEQUENCE,)
Box = tuple[float, float, float, float]
Evaluator = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], dict[str, float]]


@dataclass
class ItemTruth:
    """The stored items of one sample: their boxes (image fractions) and arrays (the tokenizer's items), aligned."""

    boxes: list[Box]
    items: list[np.ndarray]


@dataclass
class ItemTask:
    modality: str
    key: str
    part: str
    tokenizer: Any
    serializer: Any
    items: Callable[[dict[str, Any], int], np.ndarray]
    evaluator: Evaluator | None


def task(pipe: Any, name: str, store: Any, inputs: Sequence[str], config: EvalConfig) -> tuple[ItemTask | None, str]:
    """``(task, "")`` when ``name`` is a sequence key the model predicts, of one modality, with a trained per-item
    tokenizer, a serializer implementing ItemMatching and the raw truth in the store; else ``(None, why)``."""
    from fourm_core.registry import resolve_ref
    from fourm_core.serialization import ItemMatching
    from fourm_core.tokenizers.training import item_function, source_of

    registry, preset = pipe.registry, pipe.preset
    key = registry.get(name).model_key(preset)
    info = pipe.keys.get(key)
    if info is None or info.kind not in KINDS or not info.target:
        return None, f"the model does not predict {key!r} as a sequence"
    if len(registry.model_keys(preset).get(key, ())) != 1:
        return None, f"{key!r} is shared by several modalities"
    if name in inputs:
        return None, "it is an input"
    if config.ensemble > 1:
        return None, "item sequences have no per-sample fusion to ensemble"
    if pipe.vocabulary is None:
        return None, "no text vocabulary"
    tokenizer, why = common.trained_tokenizer(pipe, name)
    if tokenizer is None:
        return None, str(why)
    serializer = registry.serializer(name)
    part = f"{source_of(tokenizer.config, name, registry)[0]}/raw"
    if tokenizer.config.items is None:
        return None, "its tokenizer is not per item"
    if not isinstance(serializer, ItemMatching):
        return None, "its serializer does not implement ItemMatching (item_boxes, truth_boxes)"
    if part not in store.parts():
        return None, f"the store has no {part}"
    evaluator = resolve_ref(tokenizer.config.evaluator) if tokenizer.config.evaluator else None
    items = item_function(tokenizer.config)
    return ItemTask(name, key, part, tokenizer, serializer, items, evaluator), ""  # type: ignore[arg-type]


def score(pipe: Any, task: ItemTask, held: HeldOut) -> TaskScores:
    """Recall, precision, parse rate and matched-item metrics of the generated strings, beside the bound."""
    store, held_out, contents, config, progress = held.store, held.indices, held.contents, held.config, held.progress
    start = time.perf_counter()
    truth = [_item_truth(store, task, i) for i in held_out]
    ids = _generate(pipe, task, contents, config, progress)
    scores = TaskScores(task.modality, task.key, len(held_out))
    scores.model = score_item_ids(
        ids, truth, task.serializer, task.tokenizer, pipe.vocabulary, store.image_size, task.evaluator
    )
    scores.bound = item_bound(truth, task.tokenizer, task.evaluator)
    scores.seconds = round(time.perf_counter() - start, 2)
    return scores


def _item_truth(store: Any, task: ItemTask, index: int) -> ItemTruth:
    row = common.read_part(store, task.part, index)
    items = list(task.items(row, task.tokenizer.config.input_size))
    boxes = [tuple(float(v) for v in b) for b in task.serializer.truth_boxes(row, store.image_size)]
    if len(boxes) != len(items):
        raise ValueError(
            f"sample {index}: {len(items)} items but {len(boxes)} boxes from {task.modality}'s "
            "serializer (truth_boxes must follow the items function)"
        )
    return ItemTruth(boxes, items)  # type: ignore[arg-type]


def _generate(
    pipe: Any, task: ItemTask, contents: Sequence[Mapping[str, Any]], config: EvalConfig, progress: Progress
) -> list[torch.Tensor]:
    """Generated ids (one row per sample), autoregressive, ``batch_size`` samples per sampler call."""
    from fourm_core.inference.schedule import StepConfig

    step = StepConfig(target=task.key, scheme="autoregressive", temperature=config.temperature)
    return [row for ids in common.generated_ids(pipe, step, contents, config, progress, task.modality) for row in ids]


def sequence_text(ids: Any, vocabulary: Any) -> str:
    """The text of generated ids: up to ``[EOS]``, padding dropped, whitespace normalised (as generation outputs
    decode sequences)."""
    from fourm_core.data.masking import EOS_ID, PAD_ID

    tokens = [int(t) for t in torch.as_tensor(ids).reshape(-1).tolist()]
    if EOS_ID in tokens:
        tokens = tokens[: tokens.index(EOS_ID)]
    tokens = [t for t in tokens if t != PAD_ID]
    return " ".join(vocabulary.decode(tokens).split()) if tokens else ""


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(xmin, ymin, xmax, ymax)`` boxes (0 when both are empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0) + max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0) - inter
    return float(inter / union) if union > 0 else 0.0


def match_boxes(predicted: Sequence[Box], truth: Sequence[Box], iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching: repeatedly the (predicted, true) pair of highest box IoU among unused ones,
    while it is at least ``iou`` (ties: the earlier prediction, then the earlier truth). Returns the pairs of
    indices, in the order matched; unmatched predictions and truths are simply absent."""
    candidates = sorted(
        ((box_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    pairs = []
    for value, i, j in candidates:
        if value < iou:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        pairs.append((i, j))
    return pairs


def score_item_ids(
    ids: Sequence[Any],
    truth: Sequence[ItemTruth],
    serializer: Any,
    tokenizer: Any,
    vocabulary: Any,
    image_size: int,
    evaluator: Evaluator | None = None,
    iou: float = 0.5,
) -> dict[str, float]:
    """Scores of generated (or given) id rows against the true items, one row per sample (see the module
    docstring). A predicted item whose codes the tokenizer cannot decode (wrong count, outside its codebook) counts
    as a prediction that matches nothing. With no true items recall is 1; with no predictions precision is 1 when
    there was nothing to find, else 0."""
    if len(ids) != len(truth):
        raise ValueError(f"{len(ids)} id rows for {len(truth)} samples")
    parsed = 0
    n_pred = n_true = 0
    true_items: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for row, sample in zip(ids, truth, strict=True):
        n_true += len(sample.boxes)
        try:
            value = serializer.parse(sequence_text(row, vocabulary))
            predicted = serializer.item_boxes(value, image_size)
        except Exception:  # noqa: BLE001 (any codec's complaint: an unparsable generation has no items)
            continue
        parsed += 1
        n_pred += len(predicted)
        usable = [k for k, (_, c) in enumerate(predicted) if _decodable(c, tokenizer)]
        pairs = match_boxes([predicted[k][0] for k in usable], sample.boxes, iou)
        for i, j in pairs:
            codes.append(np.asarray(predicted[usable[i]][1], np.int64))
            true_items.append(sample.items[j])
    matched = len(codes)
    scores = {
        "recall": matched / n_true if n_true else 1.0,
        "precision": matched / n_pred if n_pred else (1.0 if not n_true else 0.0),
        "parse_rate": parsed / len(truth) if truth else 0.0,
        "matched": float(matched),
    }
    if matched:
        decoded = _decode(tokenizer, torch.as_tensor(np.stack(codes)))
        scores.update(_item_metrics(tokenizer, evaluator, true_items, decoded))
    return scores


def item_bound(
    truth: Sequence[ItemTruth],
    tokenizer: Any,
    evaluator: Evaluator | None = None,
) -> dict[str, float]:
    """The tokenizer bound on every true item, ``decode(encode(items))``, with the metrics of matched pairs (empty
    when the samples hold no items)."""
    items = [item for sample in truth for item in sample.items]
    if not items:
        return {}
    ids = torch.cat([tokenizer.encode_raw(items[i : i + _BATCH]) for i in range(0, len(items), _BATCH)])
    return _item_metrics(tokenizer, evaluator, items, _decode(tokenizer, ids))


_BATCH = 256


def _decodable(codes: Any, tokenizer: Any) -> bool:
    codes = np.asarray(codes).reshape(-1)
    return len(codes) == tokenizer.n_tokens and bool(((codes >= 0) & (codes < tokenizer.vocab_size)).all())


def _decode(tokenizer: Any, ids: torch.Tensor) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in range(0, len(ids), _BATCH):
        out.extend(tokenizer.decode_raw(ids[i : i + _BATCH].long()))
    return out


def _item_metrics(
    tokenizer: Any,
    evaluator: Evaluator | None,
    true: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
) -> dict[str, float]:
    scores = dict(tokenizer.transform.metrics(true, pred))
    if evaluator is not None:
        scores.update(evaluator(true, pred))
    return {k: float(v) for k, v in scores.items()}
