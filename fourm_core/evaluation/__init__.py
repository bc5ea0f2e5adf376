"""Held-out evaluation: one :func:`evaluate` over every target a model predicts, the shape of the paper's Table 1.

Targets come in families, each a module that says which targets it can score (``task``) and how (``score``):
:mod:`.maps` (image and global tokens: maps, features, embeddings) and :mod:`.items` (sequences of items with
per-item tokenizer codes: poses, instances; scored by greedy box matching and, beside it, by the metrics other work
reports: :mod:`.coco` box / mask AP through pycocotools and :mod:`.poses` MPJPE / PA-MPJPE) and :mod:`.boxes`
(labelled boxes: detections, COCO box AP per class). :func:`evaluate` asks
every family for every target, scores what one of them accepts and returns one :class:`~.common.EvalResult`; callers
never dispatch between them. Shared pieces (configuration, split, inputs, batched generation, the markdown table)
live in :mod:`.common`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fourm_core.evaluation import boxes, items, maps
from fourm_core.evaluation.common import EvalConfig, EvalResult, HeldOut, Progress, TaskScores, scores_markdown
from fourm_core.evaluation.maps import label_knn

__all__ = ["FAMILIES", "EvalConfig", "EvalResult", "TaskScores", "evaluate", "label_knn", "scores_markdown"]

#: The target families, in the order their targets are tried (a target belongs to the first that accepts it).
FAMILIES = (maps, items, boxes)


def evaluate(
    model: Any,
    store_path: str | os.PathLike[str],
    config: EvalConfig | None = None,
    progress: Progress = None,
) -> EvalResult:
    """Score ``model`` (an inference :class:`~fourm_core.inference.pipeline.Pipeline` or a ``fourm_core.FourM``)
    on the held-out samples of a store, per target modality: maps and embeddings, and item sequences, each beside
    its tokenizer bound.

    ``progress``: optional callable ``(modality, done, total)``. Raises ``ValueError`` naming the problem when an
    input is missing from the store, a named target cannot be evaluated (unless ``config.strict`` is off), nothing
    can be evaluated, or the store is too small."""
    from fourm_core.evaluation.common import held_out_split, input_contents, input_names
    from fourm_core.inference.pipeline import as_pipeline
    from fourm_core.storage.store import AlignedStore

    pipe = as_pipeline(model)
    config = config or EvalConfig()
    store = AlignedStore.open(Path(store_path), mode="r")
    held_out = held_out_split(store, config.samples)
    inputs = input_names(pipe, config.inputs)
    result = EvalResult()
    tasks = []
    for name in config.targets if config.targets is not None else pipe.registry.names():
        found, why = _task(pipe, name, store, inputs, config)
        if found is not None:
            tasks.append(found)
        elif config.targets is not None and config.strict:
            raise ValueError(f"{name}: cannot be evaluated: {why}")
        else:
            result.skipped[name] = why
    if not tasks:
        raise ValueError("nothing to evaluate: no target has a trained tokenizer and stored truth")
    held = HeldOut(store, held_out, input_contents(pipe, store_path, held_out, inputs), config, progress)
    for family, task in tasks:
        result[task.modality] = family.score(pipe, task, held)
    return result


def _task(pipe: Any, name: str, store: Any, inputs: list[str], config: EvalConfig) -> tuple[Any, str]:
    """``((family, task), "")`` from the first family that accepts ``name``, else ``(None, why)`` in the words of
    the family whose kinds the target has (the most telling reason)."""
    kind = pipe.registry.get(name).spec.kind
    reasons = {}
    for family in FAMILIES:
        task, why = family.task(pipe, name, store, inputs, config)
        if task is not None:
            return (family, task), ""
        reasons[family] = why
    telling = next((f for f in FAMILIES if kind in f.KINDS), FAMILIES[0])
    return None, reasons[telling]
