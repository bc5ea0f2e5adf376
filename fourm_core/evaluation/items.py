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
  nothing matched, so every reported number is finite;
* beside the greedy numbers, COCO box AP (``box_ap``, ``box_ap50``, ``box_ap75``) of every parsed item's box and, when
  the item tokenizer's items are masks, COCO mask AP (``mask_ap*``) of the decoded masks pasted into their boxes,
  both by pycocotools (:mod:`.coco`, class-agnostic), each generated item ranked by its confidence (the
  geometric-mean probability of its sampled ids: :mod:`fourm_core.inference.confidence`; given ids without
  log-probabilities score 1). An evaluator may add pose errors (:mod:`.poses`: ``mpjpe_mm``, ``pa_mpjpe_mm``).

Beside them, the **tokenizer bound** on the same true items, ``decode(encode(items))``, with the same metrics
(recall, precision and box AP are 1 by construction and not reported; mask AP is, of the true boxes with the
round-tripped masks). Scoring given ids (:func:`score_item_ids`) is separate from generating them, so a test can
feed the true serialised sequences and must get the bound back.

One family of :func:`fourm_core.evaluation.evaluate`; nothing here names a modality.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fourm_core.evaluation import common
from fourm_core.evaluation.coco import coco_ap, paste_mask
from fourm_core.evaluation.common import EvalConfig, HeldOut, TaskScores
from fourm_core.inference.confidence import item_scores
from fourm_core.spec import ModalityKind

__all__ = [
    "KINDS",
    "ItemTask",
    "ItemTruth",
    "box_iou",
    "is_mask_tokenizer",
    "item_bound",
    "item_scores",
    "match_boxes",
    "score",
    "score_item_ids",
    "sequence_text",
    "task",
    "true_masks",
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

    registry = pipe.registry
    found, why = common.sequence_target(pipe, name, inputs, config, KINDS, "item")
    if found is None:
        return None, why
    key = found
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
    truth = [item_truth(store, task, i) for i in held_out]
    grammar = common.span_grammar(pipe, task.key)  # built once: decoding within it and finding its items
    ids, logprobs = common.generated_rows(pipe, task.key, task.modality, contents, config, progress, grammar)
    scores = TaskScores(task.modality, task.key, len(held_out))
    scores.model = score_item_ids(
        ids,
        truth,
        task.serializer,
        task.tokenizer,
        pipe.vocabulary,
        store.image_size,
        task.evaluator,
        logprobs=logprobs,
        grammar=grammar,
    )
    scores.bound = item_bound(truth, task.tokenizer, task.evaluator, store.image_size)
    scores.seconds = round(time.perf_counter() - start, 2)
    return scores


def item_truth(store: Any, task: ItemTask, index: int) -> ItemTruth:
    row = common.read_part(store, task.part, index)
    items = list(task.items(row, task.tokenizer.config.input_size))
    boxes = [tuple(float(v) for v in b) for b in task.serializer.truth_boxes(row, store.image_size)]
    if len(boxes) != len(items):
        raise ValueError(
            f"sample {index}: {len(items)} items but {len(boxes)} boxes from {task.modality}'s "
            "serializer (truth_boxes must follow the items function)"
        )
    return ItemTruth(boxes, items)  # type: ignore[arg-type]


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
    logprobs: Sequence[Any] | None = None,
    grammar: Any = None,
) -> dict[str, float]:
    """Scores of generated (or given) id rows against the true items, one row per sample (see the module
    docstring). A predicted item whose codes the tokenizer cannot decode (wrong count, outside its codebook) counts
    as a prediction that matches nothing. With no true items recall is 1; with no predictions precision is 1 when
    there was nothing to find, else 0. ``logprobs`` (one row per id row) and ``grammar`` give each item its
    confidence for AP (:func:`item_scores`); without ``logprobs`` every item scores 1."""
    if len(ids) != len(truth):
        raise ValueError(f"{len(ids)} id rows for {len(truth)} samples")
    if logprobs is not None and len(logprobs) != len(ids):
        raise ValueError(f"{len(logprobs)} log-probability rows for {len(ids)} id rows")
    parsed = 0
    n_pred = n_true = 0
    predicted_boxes: list[list[Box]] = []
    confidences: list[list[float]] = []
    usable_codes: list[list[np.ndarray]] = []  # per sample, the codes of its decodable predictions
    usable_index: list[list[int]] = []  # their positions in predicted_boxes
    pairs_of: list[list[tuple[int, int]]] = []  # per sample, (usable position, true item) matched pairs
    for index, (row, sample) in enumerate(zip(ids, truth, strict=True)):
        n_true += len(sample.boxes)
        predicted: list = []
        try:
            value = serializer.parse(sequence_text(row, vocabulary))
            predicted = serializer.item_boxes(value, image_size)
            parsed += 1
        except Exception:  # noqa: BLE001 (any codec's complaint: an unparsable generation has no items)
            predicted = []
        n_pred += len(predicted)
        confidences.append(
            item_scores(grammar, row, logprobs[index], len(predicted))
            if logprobs is not None
            else [1.0] * len(predicted)
        )
        usable = [k for k, (_, c) in enumerate(predicted) if decodable(c, tokenizer)]
        predicted_boxes.append([tuple(float(v) for v in b) for b, _ in predicted])  # type: ignore[misc]
        usable_index.append(usable)
        usable_codes.append([np.asarray(predicted[k][1], np.int64).reshape(-1) for k in usable])
        pairs_of.append(match_boxes([predicted[k][0] for k in usable], sample.boxes, iou))
    flat = [c for codes in usable_codes for c in codes]
    decoded_flat = decode_items(tokenizer, torch.as_tensor(np.stack(flat))) if flat else []
    decoded: list[list[np.ndarray]] = []
    for codes in usable_codes:
        decoded.append(decoded_flat[: len(codes)])
        decoded_flat = decoded_flat[len(codes) :]
    true_items = [sample.items[j] for sample, pairs in zip(truth, pairs_of, strict=True) for _, j in pairs]
    pred_items = [found[i] for found, pairs in zip(decoded, pairs_of, strict=True) for i, _ in pairs]
    matched = len(pred_items)
    scores = {
        "recall": matched / n_true if n_true else 1.0,
        "precision": matched / n_pred if n_pred else (1.0 if not n_true else 0.0),
        "parse_rate": parsed / len(truth) if truth else 0.0,
        "matched": float(matched),
    }
    if matched:
        scores.update(item_metrics(tokenizer, evaluator, true_items, pred_items))
    truth_boxes = [s.boxes for s in truth]
    scores.update(coco_ap(truth_boxes, predicted_boxes, image_size, prefix="box", predicted_scores=confidences))
    if is_mask_tokenizer(tokenizer):
        masks = []
        for boxes, where, found in zip(predicted_boxes, usable_index, decoded, strict=True):
            # an undecodable prediction keeps its place as an empty mask: a false positive, as in the greedy scores
            pasted = [np.zeros((image_size, image_size), np.uint8) for _ in boxes]
            for k, mask in zip(where, found, strict=True):
                pasted[k] = paste_mask(mask, boxes[k], image_size)
            masks.append(pasted)
        pasted_truth = true_masks(truth, image_size)
        scores.update(
            coco_ap(truth_boxes, predicted_boxes, image_size, pasted_truth, masks, "mask", predicted_scores=confidences)
        )
    return scores


def is_mask_tokenizer(tokenizer: Any) -> bool:
    """Whether the item tokenizer's items are box-cropped binary masks (its transform), so mask AP applies."""
    from fourm_core.tokenizers.transforms import Masks

    return isinstance(tokenizer.transform, Masks)


def true_masks(truth: Sequence[ItemTruth], image_size: int) -> list[list[np.ndarray]]:
    """Per sample, its true masks pasted into their boxes of an ``image_size`` image (what mask AP compares)."""
    return [[paste_mask(m, b, image_size) for b, m in zip(s.boxes, s.items, strict=True)] for s in truth]


def item_bound(
    truth: Sequence[ItemTruth],
    tokenizer: Any,
    evaluator: Evaluator | None = None,
    image_size: int | None = None,
) -> dict[str, float]:
    """The tokenizer bound on every true item, ``decode(encode(items))``, with the metrics of matched pairs (empty
    when the samples hold no items). With ``image_size`` and mask items, also the mask AP of the true boxes with
    the round-tripped masks (box AP is 1 by construction and not reported)."""
    items = [item for sample in truth for item in sample.items]
    if not items:
        return {}
    ids = torch.cat([tokenizer.encode_raw(items[i : i + _BATCH]) for i in range(0, len(items), _BATCH)])
    decoded = decode_items(tokenizer, ids)
    scores = item_metrics(tokenizer, evaluator, items, decoded)
    if image_size is not None and is_mask_tokenizer(tokenizer):
        masks, start = [], 0
        for sample in truth:
            found = decoded[start : start + len(sample.items)]
            masks.append([paste_mask(m, b, image_size) for b, m in zip(sample.boxes, found, strict=True)])
            start += len(sample.items)
        boxes = [s.boxes for s in truth]
        scores.update(coco_ap(boxes, boxes, image_size, true_masks(truth, image_size), masks, "mask"))
    return scores


_BATCH = 256


def decodable(codes: Any, tokenizer: Any) -> bool:
    codes = np.asarray(codes).reshape(-1)
    return len(codes) == tokenizer.n_tokens and bool(((codes >= 0) & (codes < tokenizer.vocab_size)).all())


def decode_items(tokenizer: Any, ids: torch.Tensor) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in range(0, len(ids), _BATCH):
        out.extend(tokenizer.decode_raw(ids[i : i + _BATCH].long()))
    return out


def item_metrics(
    tokenizer: Any,
    evaluator: Evaluator | None,
    true: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
) -> dict[str, float]:
    scores = dict(tokenizer.transform.metrics(true, pred))
    if evaluator is not None:
        scores.update(evaluator(true, pred))
    return {k: float(v) for k, v in scores.items()}
