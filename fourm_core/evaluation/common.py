"""What every held-out evaluation shares: the configuration, the score record, the held-out split, the inputs
built as in training, the trained tokenizer of a target, and batched generation through the inference pipeline.

The target families (:mod:`.maps` for image and global tokens, :mod:`.items` for item-tokenised sequences) only
say which targets they can score and how; :func:`fourm_core.evaluation.evaluate` runs them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from fourm_core.spec import ModalityKind

__all__ = [
    "EvalConfig",
    "EvalResult",
    "HeldOut",
    "TaskScores",
    "constraint_grammars",
    "generated_ids",
    "generated_rows",
    "held_out_split",
    "input_contents",
    "input_names",
    "read_part",
    "scores_markdown",
    "sequence_target",
    "span_grammar",
    "trained_tokenizer",
]

Progress = Callable[[str, int, int], None] | None


class EvalConfig(BaseModel):
    """What to evaluate and how to sample. ``inputs`` ``None``: the model's pixel modalities (the paper evaluates
    from RGB). ``targets`` ``None``: every modality the model predicts that some family can score (a trained
    tokenizer and the truth in the store; not a re-encoding of an input). ``strict``: a named target that cannot be
    evaluated is an error (``False``: it is skipped and its reason kept in ``EvalResult.skipped``). ``samples``:
    the last N samples of the store, the split a training run holds out (``val_samples``). ``steps`` /
    ``temperature``: the MaskGIT schedule per map target (1 step at temperature 0 is the deterministic one-pass
    prediction); ``temperature`` 0 decodes item sequences greedily. ``ensemble``: draws fused per sample (maps and
    embeddings only: item sequences have no fusion and are skipped). ``label_field``: a field of the store's
    source part used as the class of each sample for kNN retrieval with predicted global embeddings (``None``: no
    kNN); ``bank``: how many training samples (before the held-out ones) form the kNN bank. ``constrain``: item
    sequences are decoded within their serializer's grammar (as generation does by default), so every output parses;
    ``False`` scores the model's unconstrained strings (the before/after comparison of constrained decoding)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] | None = Field(None, min_length=1)
    targets: list[str] | None = None
    strict: bool = True
    samples: int = Field(64, ge=1)
    steps: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    ensemble: int = Field(1, ge=1)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    label_field: str | None = "scene_type"
    bank: int = Field(2000, ge=1)
    constrain: bool = True


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


@dataclass
class HeldOut:
    """What every family scores against: the open store, the held-out indices, the inputs of each (model-key
    contents, built as in training), the configuration and the progress callback."""

    store: Any
    indices: list[int]
    contents: Sequence[Mapping[str, Any]]
    config: EvalConfig
    progress: Progress = None


class EvalResult(dict[str, TaskScores]):
    """``{modality: TaskScores}`` in evaluation order, plus ``skipped``: modality -> why it was not evaluated."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}


def held_out_split(store: Any, samples: int) -> list[int]:
    """The last ``samples`` indices of the store (what a training run's ``val_samples`` holds out)."""
    if samples >= store.n_samples:
        raise ValueError(f"{store.url}: {samples} held-out samples of {store.n_samples}; keep some to train")
    return list(range(store.n_samples - samples, store.n_samples))


def input_names(pipe: Any, inputs: Sequence[str] | None) -> list[str]:
    """The given input modalities, or by default every pixel modality the model takes as input."""
    if inputs is not None:
        return list(inputs)
    found = []
    for m in pipe.registry.modalities():
        info = pipe.keys.get(m.model_key(pipe.preset))
        if m.spec.kind == ModalityKind.PIXELS and info is not None and info.input:
            found.append(m.name)
    if not found:
        raise ValueError("the model takes no pixel modality as input: name the evaluation inputs")
    return found


def input_contents(
    pipe: Any, store_path: str | os.PathLike[str], indices: Sequence[int], inputs: Sequence[str]
) -> list[dict[str, Any]]:
    """Per sample the model-key contents of ``inputs`` (full image, built exactly as in training)."""
    from fourm_core.data.pipeline import SampleBuilder, open_store_dataset

    keys = [pipe.resolve(name).key for name in inputs]
    dataset = open_store_dataset(store_path, pipe.registry, crop=0)
    builder = SampleBuilder(pipe.registry, pipe.preset, pipe.vocabulary)
    contents = []
    for index in indices:
        built = builder(dataset[index])
        missing = [k for k in keys if k not in built]
        if missing:
            raise ValueError(f"sample {index} of {store_path} has no input {', '.join(missing)}")
        contents.append({k: built[k] for k in keys})
    return contents


def trained_tokenizer(pipe: Any, name: str) -> tuple[Any, str | None]:
    """``(tokenizer, None)`` for ``name``'s trained tokenizer, or ``(None, why not)``."""
    if pipe.tokenizers is None:
        return None, "no tokenizer directory"
    try:
        tokenizer = pipe.tokenizer(name)
    except Exception as exc:  # noqa: BLE001 (missing tokenizer: skipped, or reported when asked for)
        return None, f"no trained tokenizer ({exc.__cause__ or exc})"
    if not getattr(tokenizer, "trained", False):
        return None, "its tokenizer is not trained"
    return tokenizer, None


def read_part(store: Any, part: str, index: int) -> Any:
    """Sample ``index`` of a store part; a missing row is an error naming it."""
    row = store.read(part, index)
    if row is None:
        raise ValueError(f"sample {index}: {part} is missing (the labeler failed on it)")
    return row


def sequence_target(
    pipe: Any, name: str, inputs: Sequence[str], config: EvalConfig, kinds: Sequence[Any], what: str
) -> tuple[str | None, str]:
    """``(model key, "")`` when ``name`` is a sequence key the model predicts (of a kind in ``kinds``), of one
    modality, not an input, with a text vocabulary and no ensemble asked for (``what`` names the family's sequences
    in that reason); else ``(None, why)``. The checks the sequence families share."""
    registry, preset = pipe.registry, pipe.preset
    key = registry.get(name).model_key(preset)
    info = pipe.keys.get(key)
    if info is None or info.kind not in kinds or not info.target:
        return None, f"the model does not predict {key!r} as a sequence"
    if len(registry.model_keys(preset).get(key, ())) != 1:
        return None, f"{key!r} is shared by several modalities"
    if name in inputs:
        return None, "it is an input"
    if config.ensemble > 1:
        return None, f"{what} sequences have no per-sample fusion to ensemble"
    if pipe.vocabulary is None:
        return None, "no text vocabulary"
    return key, ""


def generated_ids(
    pipe: Any,
    step: Any,
    contents: Sequence[Mapping[str, Any]],
    config: EvalConfig,
    progress: Progress,
    modality: str,
    repeat: int = 1,
    logprobs: list[torch.Tensor] | None = None,
    grammar: Any = None,
) -> list[torch.Tensor]:
    """Id rows of ``step.target`` generated from ``contents``: ``batch_size`` samples per sampler call, each
    repeated ``repeat`` times in a row (one list entry per call: (batch * repeat, tokens)). ``logprobs``: when a
    list, each call's (batch * repeat, tokens) log-probabilities of the sampled ids are appended to it
    (autoregressive targets; :mod:`fourm_core.inference.confidence`). ``grammar``: the target's grammar when the
    caller has built it already (it is built here otherwise, when ``config.constrain``)."""
    sampler = pipe.sampler(grammars=constraint_grammars(pipe, step.target, config, grammar))
    out: list[torch.Tensor] = []
    for start in range(0, len(contents), config.batch_size):
        chunk = contents[start : start + config.batch_size]
        rows = [c for c in chunk for _ in range(repeat)]
        recorded: dict[str, torch.Tensor] | None = {} if logprobs is not None else None
        out.append(sampler.generate(rows, [step], seed=config.seed + start, logprobs=recorded)[step.target].cpu())
        if logprobs is not None and recorded is not None:
            logprobs.append(recorded[step.target])
        if progress is not None:
            progress(modality, min(start + config.batch_size, len(contents)), len(contents))
    return out


def constraint_grammars(pipe: Any, key: str, config: EvalConfig, grammar: Any = None) -> dict[str, Any]:
    """The grammars a sampler decodes ``key`` within: none unless ``config.constrain``; ``grammar`` when given, else
    the serializer's (an error naming the key when this vocabulary cannot express it)."""
    from fourm_core.inference import sequence_grammars

    if not config.constrain:
        return {}
    return {key: grammar} if grammar is not None else sequence_grammars(pipe, [key])


def span_grammar(pipe: Any, key: str) -> Any:
    """The grammar that tells ``key``'s items apart in its strings (its serializer's, whether or not decoding is
    constrained), or ``None`` when it has none or this vocabulary cannot express it."""
    from fourm_core.inference import sequence_grammars

    return sequence_grammars(pipe, [key], strict=False).get(key)


def generated_rows(
    pipe: Any,
    key: str,
    modality: str,
    contents: Sequence[Mapping[str, Any]],
    config: EvalConfig,
    progress: Progress,
    grammar: Any = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Ids of the sequence ``key`` generated from ``contents`` and their log-probabilities, one row each per sample
    (autoregressive, ``batch_size`` samples per sampler call, within ``grammar`` when decoding is constrained)."""
    from fourm_core.inference.schedule import StepConfig

    step = StepConfig(target=key, scheme="autoregressive", temperature=config.temperature)
    recorded: list[torch.Tensor] = []
    ids = generated_ids(pipe, step, contents, config, progress, modality, logprobs=recorded, grammar=grammar)
    return [row for part in ids for row in part], [row for part in recorded for row in part]


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
