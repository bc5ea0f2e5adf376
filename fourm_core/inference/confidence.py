"""Per-item confidences of generated sequences, for COCO AP and for ranking a model's boxes, instances and people.

AP sorts predictions by a score; a generated string has none of its own. The sampler records the log-probability
of every id it chose (``GenerationSampler.generate(logprobs=...)``: after guidance and the grammar mask, before
temperature), and the serializer's grammar says which ids belong to which item (:class:`~fourm_core.grammar.Item`,
:meth:`~fourm_core.grammar.Grammar.item_spans`). An item's confidence is the geometric mean of the probabilities
of its sampled ids, ``exp(mean log p)``: a number in (0, 1] that does not shrink with the item's length, so a
person (40 ids) and a box (5 ids) compare fairly. This is the usual sequence-level confidence of
autoregressive detectors (Pix2Seq scores a box by its class token's probability; its tokens' mean is the variant
that also weighs the coordinates). Teacher-forced ids (a prompt box) carry no probability and are left out; an
item made only of forced ids scores 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["aligned_item_scores", "item_confidences", "item_scores", "sequence_confidence"]


def _geometric_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return math.exp(sum(finite) / len(finite)) if finite else 1.0


def sequence_confidence(logprobs: Sequence[float]) -> float:
    """The geometric-mean probability of every sampled id of one sequence (its ``[EOS]`` included)."""
    return _geometric_mean(logprobs)


def item_confidences(
    grammar: Any, ids: Sequence[int], logprobs: Sequence[float]
) -> list[tuple[tuple[int, ...], float]] | None:
    """Per item of ``ids`` in writing order: ``(its ids, its confidence)``; empty when the string has no items (or
    the grammar marks none). ``None`` when the grammar refuses the string (its items cannot be told apart)."""
    spans = grammar.item_spans(list(ids))
    if spans is None:
        return None
    return [(tuple(int(t) for t in ids[a:b]), _geometric_mean([float(v) for v in logprobs[a:b]])) for a, b in spans]


def aligned_item_scores(confidences: Sequence[tuple[tuple[int, ...], float]] | None, count: int) -> list[float] | None:
    """Scores for the ``count`` items a serializer parsed from the same string: the items as written when their
    numbers agree, else with repeated items (identical ids, such as one SAM instance found by two query points and
    listed once by the serializer) merged at their first place with their best confidence; ``None`` when neither
    agrees (the caller falls back to :func:`sequence_confidence`)."""
    if confidences is None:
        return None if count else []
    if len(confidences) == count:
        return [c for _, c in confidences]
    merged: dict[tuple[int, ...], float] = {}
    for item, confidence in confidences:
        merged[item] = max(confidence, merged.get(item, 0.0))
    return list(merged.values()) if len(merged) == count else None


def item_scores(grammar: Any, ids: Any, logprobs: Any, count: int | None = None) -> list[float] | None:
    """Confidences of the items of one generated row (``ids`` and ``logprobs``: sequences or 1-D tensors).

    ``count`` ``None``: one per item as written, ``None`` when there is no ``grammar``, it marks no items, or it
    refuses the string (what generation outputs carry). ``count``: one for each of the ``count`` items a
    serializer parsed from the row, by :func:`aligned_item_scores`, else the whole string's confidence for each
    (what AP ranks by)."""
    values = np.asarray(logprobs, dtype=np.float64).reshape(-1).tolist()
    found = None
    if grammar is not None and grammar.has_items:
        found = item_confidences(grammar, np.asarray(ids).reshape(-1).astype(np.int64).tolist(), values)
    if count is None:
        return None if found is None else [c for _, c in found]
    scores = aligned_item_scores(found, count) if found is not None else None
    return scores if scores is not None else [sequence_confidence(values)] * count
