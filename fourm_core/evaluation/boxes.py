"""Labelled box sequences (detections): held-out COCO box AP of the generated strings, per class as COCO averages
it, beside the greedy class-aware matching the item family uses (recall, precision, parse rate).

For every sequence key the model predicts whose serializer implements :class:`LabelledBoxes` and whose raw part is
in the store, the model generates the string from the inputs alone (autoregressively, batched, constrained by the
serializer's grammar when it has one), the serializer parses it, and :meth:`LabelledBoxes.labelled_boxes` turns the
parsed value and the stored value alike into ``(box, label)`` pairs. Scored: ``box_ap``, ``box_ap50``,
``box_ap75`` (:mod:`.coco`, each generated box ranked by its confidence: :mod:`fourm_core.inference.confidence`),
and the greedy ``recall`` / ``precision`` at box IoU 0.5 with equal labels. No tokenizer is involved; the bound is
the format's own: the true boxes written by the serializer and read back (coordinates quantised to its bins, boxes
below its score threshold dropped), scored the same way.

One family of :func:`fourm_core.evaluation.evaluate`; nothing here names a modality.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fourm_core.evaluation import common
from fourm_core.evaluation.coco import coco_ap
from fourm_core.evaluation.common import EvalConfig, HeldOut, TaskScores
from fourm_core.serialization_protocols import LabelledBoxes
from fourm_core.spec import ModalityKind

__all__ = ["KINDS", "BoxTask", "LabelledBoxes", "score", "score_box_ids", "task"]

#: The kinds this family scores.
KINDS = (ModalityKind.SEQUENCE,)
Box = tuple[float, float, float, float]


@dataclass
class BoxTask:
    modality: str
    key: str
    part: str
    serializer: Any


def task(pipe: Any, name: str, store: Any, inputs: Sequence[str], config: EvalConfig) -> tuple[BoxTask | None, str]:
    """``(task, "")`` when ``name`` is a sequence key the model predicts, of one modality, whose serializer
    implements :class:`LabelledBoxes`, with its raw part in the store; else ``(None, why)``."""
    registry = pipe.registry
    found, why = common.sequence_target(pipe, name, inputs, config, KINDS, "box")
    if found is None:
        return None, why
    key = found
    serializer = registry.serializer(name)
    if not isinstance(serializer, LabelledBoxes):
        return None, "its serializer does not implement LabelledBoxes (labelled_boxes)"
    part = f"{name}/raw"
    if part not in store.parts():
        return None, f"the store has no {part}"
    return BoxTask(name, key, part, serializer), ""


def score(pipe: Any, task: BoxTask, held: HeldOut) -> TaskScores:
    """COCO box AP and greedy recall / precision / parse rate of the generated strings."""
    start = time.perf_counter()
    size = held.store.image_size
    values = [_stored_value(held.store, task, i) for i in held.indices]
    truth = [task.serializer.labelled_boxes(value, size) for value in values]
    grammar = common.span_grammar(pipe, task.key)  # built once: decoding within it and finding its boxes
    ids, logprobs = common.generated_rows(
        pipe, task.key, task.modality, held.contents, held.config, held.progress, grammar
    )
    scores = TaskScores(task.modality, task.key, len(held.indices))
    scores.model = score_box_ids(ids, truth, task.serializer, pipe.vocabulary, size, logprobs=logprobs, grammar=grammar)
    written = [_written_ids(task, pipe.vocabulary, value) for value in values]
    bound = score_box_ids(written, truth, task.serializer, pipe.vocabulary, size)
    scores.bound = {k: v for k, v in bound.items() if k.startswith("box_ap") or k == "recall"}
    scores.seconds = round(time.perf_counter() - start, 2)
    return scores


def _written_ids(task: BoxTask, vocabulary: Any, value: Any) -> Any:
    """The ids of ``value`` as the serializer writes it, ended by ``[EOS]`` (what a perfect model would generate)."""
    import torch

    from fourm_core.data.masking import EOS_ID

    return torch.tensor([*vocabulary.encode(task.serializer.serialize(value)), EOS_ID])


def _stored_value(store: Any, task: BoxTask, index: int) -> Any:
    """The stored value of one sample, as the training pipeline serialises it: the raw row's one array (its
    ``tokens``, if any, left out), or the serializer's ``from_store`` for rows of several arrays."""
    from fourm_core.serialization import FromStore

    row = common.read_part(store, task.part, index)
    if isinstance(task.serializer, FromStore):
        return task.serializer.from_store(dict(row))
    arrays = {k: v for k, v in row.items() if k != "tokens"}
    if len(arrays) != 1:
        raise ValueError(f"sample {index}: {task.part} holds {sorted(arrays)}; expected one array or a from_store")
    return next(iter(arrays.values()))


def score_box_ids(
    ids: Sequence[Any],
    truth: Sequence[Sequence[tuple[Box, str]]],
    serializer: Any,
    vocabulary: Any,
    image_size: int,
    logprobs: Sequence[Any] | None = None,
    grammar: Any = None,
) -> dict[str, float]:
    """Scores of generated (or given) id rows against the true labelled boxes, one row per sample: ``box_ap*``
    (per class, COCO; each box ranked by its confidence when ``logprobs`` are given:
    :func:`~fourm_core.inference.confidence.item_scores`, else every box scores 1), ``recall`` / ``precision`` of greedy
    one-to-one matching at box IoU 0.5 within a label, ``parse_rate`` (an unparsable string has no boxes) and
    ``matched``."""
    from fourm_core.evaluation.items import match_boxes, sequence_text
    from fourm_core.inference.confidence import item_scores

    if len(ids) != len(truth):
        raise ValueError(f"{len(ids)} id rows for {len(truth)} samples")
    predicted: list[list[tuple[Box, str]]] = []
    confidences: list[list[float]] = []
    parsed = matched = 0
    for index, (row, true) in enumerate(zip(ids, truth, strict=True)):
        try:
            found = serializer.labelled_boxes(serializer.parse(sequence_text(row, vocabulary)), image_size)
            parsed += 1
        except Exception:  # noqa: BLE001 (any codec's complaint: an unparsable generation has no boxes)
            found = []
        predicted.append(found)
        confidences.append(
            item_scores(grammar, row, logprobs[index], len(found)) if logprobs is not None else [1.0] * len(found)
        )
        for label in {lb for _, lb in true} & {lb for _, lb in found}:
            pairs = match_boxes([b for b, lb in found if lb == label], [b for b, lb in true if lb == label])
            matched += len(pairs)
    n_true, n_pred = sum(map(len, truth)), sum(map(len, predicted))
    scores = {
        "recall": matched / n_true if n_true else 1.0,
        "precision": matched / n_pred if n_pred else (1.0 if not n_true else 0.0),
        "parse_rate": parsed / len(truth) if truth else 0.0,
        "matched": float(matched),
    }
    scores.update(
        coco_ap(
            [[b for b, _ in t] for t in truth],
            [[b for b, _ in p] for p in predicted],
            image_size,
            prefix="box",
            truth_labels=[[lb for _, lb in t] for t in truth],
            predicted_labels=[[lb for _, lb in p] for p in predicted],
            predicted_scores=confidences,
        )
    )
    return scores
