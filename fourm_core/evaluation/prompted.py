"""Box-prompted evaluation of item sequences: the paper's instance segmentation and pose rows, queried by box.

:mod:`fourm_core.evaluation.items` lets the model find the items itself, so its score mixes detection with the
quality of each item. The paper instead gives each true item's box in the target sequence and lets the model write
only the item's tokens (SAM instances; pose estimation given the person's box). Here, for every held-out sample and
every true item, the serializer writes the start of the string up to the item's codes
(:class:`~fourm_core.serialization_protocols.ItemPrompting`), prefix-conditioned decoding
(:mod:`fourm_core.inference.prefix`) writes the rest, the first parsed item's codes are decoded by the item tokenizer
and scored against the true item with the tokenizer transform's metrics and the config's ``evaluator`` (mask IoU,
joint error), beside the tokenizer bound on the same items. Reported: those metrics averaged over items,
``parse_rate`` (prompts whose string parsed), ``decoded_rate`` (prompts whose first item had decodable codes) and
``items``; a prompt that yields no decodable item is left out of the metrics and lowers ``decoded_rate``.

Where the items are masks, also the paper's **box-prompted mask AP** (``mask_ap``, ``mask_ap50``, ``mask_ap75``,
pycocotools, :mod:`.coco`): per sample, every prompt's decoded mask pasted into its prompt box is one prediction
(an undecodable one an empty mask: a false positive), ranked by the confidence of the item's sampled ids
(:mod:`fourm_core.inference.confidence`), against the sample's true masks; the bound gives the same number for the
round-tripped true masks. Box AP is not reported: the boxes are the prompts.

The targets are found as :func:`fourm_core.evaluation.items.task` finds them, plus the ``ItemPrompting``
capability; nothing here names a modality.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.evaluation.coco import coco_ap, paste_mask
from fourm_core.evaluation.common import (
    EvalConfig,
    Progress,
    constraint_grammars,
    held_out_split,
    input_contents,
    input_names,
    span_grammar,
)

# the item family's scoring parts, so both families score items identically
from fourm_core.evaluation.items import (
    ItemTask,
    ItemTruth,
    decodable,
    decode_items,
    is_mask_tokenizer,
    item_bound,
    item_metrics,
    item_truth,
    sequence_text,
    task,
    true_masks,
)
from fourm_core.serialization_protocols import ItemPrompting

__all__ = ["Prompt", "evaluate_prompted", "generate_prompts", "prompts_of", "score_prompted"]


@dataclass
class Prompt:
    """One true item to query: its sample, the sample's model inputs, the prefix text, the true item, its box
    (image fractions) and which of the samples' truths it belongs to (:func:`prompts_of`' second list)."""

    sample: int
    contents: dict[str, Any]
    prefix: str
    item: np.ndarray
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    truth: int = 0


def prompts_of(
    task: ItemTask, store: Any, indices: Sequence[int], contents: Sequence[dict[str, Any]]
) -> tuple[list[Prompt], list[ItemTruth]]:
    """One :class:`Prompt` per true item of the samples ``indices`` (their inputs ``contents``), and the samples'
    truth (for the bound)."""
    prompts: list[Prompt] = []
    truths = []
    for index, content in zip(indices, contents, strict=True):
        truth = item_truth(store, task, index)
        truths.append(truth)
        for box, item in zip(truth.boxes, truth.items, strict=True):
            prefix = task.serializer.item_prefix(box, store.image_size)
            corners = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            prompts.append(Prompt(index, dict(content), prefix, item, corners, len(truths) - 1))
    return prompts, truths


def generate_prompts(
    pipe: Any,
    task: ItemTask,
    prompts: Sequence[Prompt],
    config: EvalConfig,
    progress: Progress = None,
    logprobs: list[torch.Tensor] | None = None,
    grammar: Any = None,
) -> list[torch.Tensor]:
    """The decoded id rows of every prompt (prefix included), ``batch_size`` prompts per sampler call, each row with
    its own prefix and grammar state. ``logprobs``: when a list, each row's log-probabilities of its sampled ids
    are appended (NaN for the prefix). ``grammar``: the target's, when the caller has built it already."""
    from fourm_core.inference.prefix import encode_prefixes
    from fourm_core.inference.schedule import StepConfig

    step = StepConfig(target=task.key, scheme="autoregressive", temperature=config.temperature)
    sampler = pipe.sampler(grammars=constraint_grammars(pipe, task.key, config, grammar))
    out: list[torch.Tensor] = []
    for start in range(0, len(prompts), config.batch_size):
        chunk = prompts[start : start + config.batch_size]
        forced = encode_prefixes(pipe, {task.key: [p.prefix for p in chunk]}, [task.key], len(chunk))
        recorded: dict[str, torch.Tensor] | None = {} if logprobs is not None else None
        ids = sampler.generate(
            [p.contents for p in chunk], [step], seed=config.seed + start, prefixes=forced, logprobs=recorded
        )
        out.extend(ids[task.key].cpu())
        if logprobs is not None and recorded is not None:
            logprobs.extend(recorded[task.key])
        if progress is not None:
            progress(task.modality, min(start + config.batch_size, len(prompts)), len(prompts))
    return out


def score_prompted(
    ids: Sequence[Any],
    prompts: Sequence[Prompt],
    task: ItemTask,
    vocabulary: Any,
    image_size: int,
    truths: Sequence[ItemTruth] | None = None,
    logprobs: Sequence[Any] | None = None,
    grammar: Any = None,
) -> dict[str, float]:
    """Scores of decoded (or given) id rows, one per prompt: the first parsed item's codes against the prompt's true
    item (see the module docstring). With ``truths`` (one per sample, as :func:`prompts_of` gives them) and mask
    items, also box-prompted mask AP, each prompt ranked by the confidence of its item's sampled
    ids (``logprobs`` per row and the ``grammar`` that finds the item; without ``logprobs`` every prompt scores 1)."""
    from fourm_core.inference.confidence import item_scores, sequence_confidence

    if len(ids) != len(prompts):
        raise ValueError(f"{len(ids)} id rows for {len(prompts)} prompts")
    parsed = 0
    codes: list[np.ndarray] = []
    true: list[np.ndarray] = []
    decoded_of: list[int | None] = []  # per prompt, its place in codes (None: no decodable item)
    confidence: list[float] = []
    for index, (row, prompt) in enumerate(zip(ids, prompts, strict=True)):
        decoded_of.append(None)
        if logprobs is not None:
            items = item_scores(grammar, row, logprobs[index])  # the prompted item is the first one written
            confidence.append(items[0] if items else sequence_confidence(torch.as_tensor(logprobs[index]).tolist()))
        else:
            confidence.append(1.0)
        try:
            value = task.serializer.parse(sequence_text(row, vocabulary))
            found = task.serializer.item_boxes(value, image_size)
        except Exception:  # noqa: BLE001 (any codec's complaint: an unparsable string has no item)
            continue
        parsed += 1
        if found and decodable(found[0][1], task.tokenizer):
            decoded_of[-1] = len(codes)
            codes.append(np.asarray(found[0][1], np.int64))
            true.append(prompt.item)
    n = len(prompts)
    scores = {"items": float(n), "parse_rate": parsed / n if n else 0.0, "decoded_rate": len(codes) / n if n else 0.0}
    decoded = decode_items(task.tokenizer, torch.as_tensor(np.stack(codes))) if codes else []
    if codes:
        scores.update(item_metrics(task.tokenizer, task.evaluator, true, decoded))
    if truths is not None and is_mask_tokenizer(task.tokenizer):
        scores.update(_prompted_mask_ap(prompts, truths, decoded, decoded_of, confidence, image_size))
    return scores


def _prompted_mask_ap(
    prompts: Sequence[Prompt],
    truths: Sequence[ItemTruth],
    decoded: Sequence[np.ndarray],
    decoded_of: Sequence[int | None],
    confidence: Sequence[float],
    image_size: int,
) -> dict[str, float]:
    """COCO mask AP of the prompts' masks (pasted into their prompt boxes) against the samples' true masks."""
    if any(p.truth >= len(truths) for p in prompts):
        raise ValueError(f"a prompt of a sample beyond the {len(truths)} truths given")
    boxes: list[list[Any]] = [[] for _ in truths]
    masks: list[list[np.ndarray]] = [[] for _ in truths]
    scores: list[list[float]] = [[] for _ in truths]
    for prompt, place, score in zip(prompts, decoded_of, confidence, strict=True):
        k = prompt.truth
        empty = np.zeros((image_size, image_size), np.uint8)
        boxes[k].append(prompt.box)
        masks[k].append(empty if place is None else paste_mask(decoded[place], prompt.box, image_size))
        scores[k].append(score)
    true_boxes = [t.boxes for t in truths]
    return coco_ap(
        true_boxes, boxes, image_size, true_masks(truths, image_size), masks, "mask", predicted_scores=scores
    )


def evaluate_prompted(
    model: Any,
    store_path: str | os.PathLike[str],
    config: EvalConfig | None = None,
    progress: Progress = None,
) -> dict[str, dict[str, Any]]:
    """Box-prompted scores of ``model`` (a pipeline or ``fourm_core.FourM``) on the store's held-out samples, per
    item-sequence target whose serializer can write a box prompt: ``{modality: {"model": {...}, "bound": {...},
    "samples": n, "seconds": s}}``; targets that cannot be evaluated are listed under ``"skipped"`` with why.
    ``config``: as :func:`fourm_core.evaluation.evaluate` takes it (samples, inputs, targets, temperature, seed,
    batch size, constrain)."""
    from fourm_core.inference.pipeline import as_pipeline
    from fourm_core.storage.store import AlignedStore

    pipe = as_pipeline(model)
    config = config or EvalConfig()
    store = AlignedStore.open(Path(store_path), mode="r")
    held_out = held_out_split(store, config.samples)
    inputs = input_names(pipe, config.inputs)
    found: list[ItemTask] = []
    skipped: dict[str, str] = {}
    for name in config.targets if config.targets is not None else pipe.registry.names():
        item_task, why = task(pipe, name, store, inputs, config)
        if item_task is not None and not isinstance(item_task.serializer, ItemPrompting):
            item_task, why = None, "its serializer cannot write a box prompt (ItemPrompting.item_prefix)"
        if item_task is not None:
            found.append(item_task)
        elif config.targets is not None and config.strict:
            raise ValueError(f"{name}: cannot be evaluated by box prompts: {why}")
        else:
            skipped[name] = why
    if not found:
        raise ValueError("nothing to evaluate by box prompts: no item-sequence target with an ItemPrompting serializer")
    contents = input_contents(pipe, store_path, held_out, inputs)
    out: dict[str, dict[str, Any]] = {}
    for item_task in found:
        started = time.perf_counter()
        prompts, truths = prompts_of(item_task, store, held_out, contents)
        logprobs: list[torch.Tensor] = []
        grammar = span_grammar(pipe, item_task.key)  # built once: decoding within it and finding its items
        ids = generate_prompts(pipe, item_task, prompts, config, progress, logprobs=logprobs, grammar=grammar)
        model_scores = score_prompted(
            ids, prompts, item_task, pipe.vocabulary, store.image_size, truths, logprobs, grammar
        )
        out[item_task.modality] = {
            "model": model_scores,
            "bound": item_bound(truths, item_task.tokenizer, item_task.evaluator, store.image_size),
            "samples": len(held_out),
            "seconds": round(time.perf_counter() - started, 2),
        }
    if skipped:
        out["skipped"] = dict(skipped)
    return out
