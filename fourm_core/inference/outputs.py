"""What generation gives back, in forms people use: arrays, pictures, text, values, files.

The sampler returns token ids per model key; ids mean nothing to a user. :class:`GenerationOutput` turns one
target's ids into the stored form through the modality's own parts (the tokenizer's ``decode_raw`` for image and
global tokens; the text vocabulary, then the key's serializer ``parse`` for sequences), draws pictures through
:func:`fourm_core.viz.pictures.picture` by the tokenizer's transform, and saves PNG or JSON.
:class:`GenerationResult` holds every target and draws one labelled grid of the inputs and the pictures.

:func:`run_generation` is the whole path from a batch of user values to one result per sample, with every check done
before any compute. Keys and transforms come from the specs and the model's key table, never from modality names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fourm_core.data.masking import EOS_ID, PAD_ID
from fourm_core.inference.requests import (
    GenerationInputs,
    Requested,
    build_inputs,
    validate_targets,
)
from fourm_core.spec import ModalityKind

if TYPE_CHECKING:
    from fourm_core.inference.pipeline import Pipeline

__all__ = [
    "GenerationOutput",
    "GenerationResult",
    "decode_outputs",
    "fuse_outputs",
    "jsonable",
    "run_generation",
]


@dataclass
class GenerationOutput:
    """One generated target of one sample.

    ``ids``: the sampler's ids (1-D; sequences end with ``[EOS]`` and are padded). ``array``: the decoded value:
    the tokenizer's stored form (e.g. an (H, W) depth map) for token keys, the parsed value for sequences (the
    text itself when parsing fails: a young model writes malformed boxes, and its text is still worth seeing).
    ``text``: sequences only, the decoded text. ``parse_error``: why the text did not parse, if it did not.
    ``transform``: the tokenizer transform that says how to draw ``array`` (``None`` for sequences).
    ``samples``: for an ensembled output, the N generations it fuses (each an output of its own); ``ids`` is then
    the per-position vote of their ids and ``array`` the fused value (:func:`fuse_outputs`).
    ``confidence``: sequences, the geometric-mean probability of the sampled ids; ``item_scores``: sequences whose
    grammar marks items (boxes, instances, people), each item's confidence in the order the items are written
    (:mod:`fourm_core.inference.confidence`); ``None`` where there is nothing to score.
    """

    name: str
    key: str
    kind: ModalityKind
    ids: torch.Tensor
    array: Any
    text: str | None = None
    parse_error: str | None = None
    transform: str | None = None
    samples: list[GenerationOutput] = field(default_factory=list, repr=False)
    #: sequences: the picture the modality's decoder drew of the parsed value (boxes on the image, a skeleton ...)
    rendered: np.ndarray | None = field(default=None, repr=False)
    confidence: float | None = None
    item_scores: list[float] | None = None

    def picture(self) -> np.ndarray | None:
        """(H, W, 3) uint8: image-like outputs by their tokenizer transform, sequences as their plugin's decoder
        drew them (``None`` when the text did not parse or the modality has no decoder), ``None`` for vectors
        (global embeddings)."""
        if self.kind == ModalityKind.SEQUENCE:
            return self.rendered
        if self.transform is None:
            return None
        from fourm_core.viz.pictures import picture

        return picture(self.transform, np.asarray(self.array))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record: ids (sequences up to their ``[EOS]``), and text + value for sequences (the raw
        array for vectors; pictures are saved as PNG instead)."""
        record: dict[str, Any] = {"key": self.key, "kind": self.kind.value, "ids": _trimmed(self.ids, self.kind)}
        if self.samples:
            record["ensemble"] = len(self.samples)
        if self.kind == ModalityKind.SEQUENCE:
            record["text"] = self.text
            if self.samples:
                record["sample_texts"] = [s.text for s in self.samples]
            record["value"] = jsonable(self.array) if self.parse_error is None else None
            if self.parse_error is not None:
                record["parse_error"] = self.parse_error
            if self.confidence is not None:
                record["confidence"] = round(self.confidence, 6)
            if self.item_scores is not None:
                record["item_scores"] = [round(v, 6) for v in self.item_scores]
        elif self.picture() is None:
            record["value"] = jsonable(self.array)
        return record

    def save(self, path: str | os.PathLike[str]) -> Path:
        """A PNG for pictures (a drawn sequence too: its text and value are in :meth:`to_json`), JSON otherwise;
        the suffix is set accordingly."""
        from fourm_core.viz.png import save_png

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = self.picture()
        if picture is not None:
            path = save_png(picture, path.with_suffix(".png"))
        else:
            path = path.with_suffix(".json")
            path.write_text(json.dumps(self.to_json(), indent=2))
        return path


@dataclass
class GenerationResult(Mapping[str, GenerationOutput]):
    """Every target of one generation, by the name it was asked for (``result["depth"]``), with the inputs for
    the grid. Iteration follows the schedule's order."""

    outputs: dict[str, GenerationOutput]
    inputs: GenerationInputs | None = None
    seed: int | None = None
    schedule: Any = field(default=None, repr=False)
    #: wall seconds per target (by name): its sampling steps for the whole batch plus decoding this sample (the
    #: first use of a tokenizer includes loading it); empty when not measured
    seconds: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> GenerationOutput:
        if name in self.outputs:
            return self.outputs[name]
        for output in self.outputs.values():  # a model key works too
            if output.key == name:
                return output
        raise KeyError(f"{name!r} was not generated (targets: {', '.join(self.outputs)})")

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def to_json(self) -> dict[str, Any]:
        """``{"seed", "inputs": {name: text}, "targets": {name: record}}``: text and parsed value of every sequence
        output and the ids of every target (pictures themselves go to PNG files); ``"seconds"`` per target when
        measured."""
        record: dict[str, Any] = {
            "seed": self.seed,
            "inputs": dict(self.inputs.texts) if self.inputs is not None else {},
            "targets": {name: out.to_json() for name, out in self.outputs.items()},
        }
        if self.seconds:
            record["seconds"] = {name: round(value, 3) for name, value in self.seconds.items()}
        return record

    def grid_png(self, path: str | os.PathLike[str], size: int = 128, text_width: int = 100) -> Path:
        """:meth:`grid_image` saved as PNG: one file to look at instead of one per target."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.grid_image(size, text_width).save(path)
        return path

    def show(self, size: int = 128) -> Any:
        """The grid of every input and output (:meth:`grid_image`): displayed inline in a notebook, in the
        system's image viewer elsewhere (nothing opens on a machine without one); the PIL image is returned."""
        image = self.grid_image(size)
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                display(image)
                return image
        except ImportError:
            pass
        try:
            image.show()
        except Exception:  # noqa: BLE001 (no viewer on a headless machine: the returned image is still there)
            pass
        return image

    def grid_image(self, size: int = 128, text_width: int = 100) -> Any:
        """One row: the input pictures, then every picture output, each labelled above; below it, the text of
        every sequence input and output (wrapped to ``text_width`` characters). A PIL image
        (:func:`fourm_core.viz.grid.labelled_grid`)."""
        from fourm_core.viz.grid import labelled_grid

        tiles: list[tuple[str, np.ndarray]] = []
        lines: list[str] = []
        if self.inputs is not None:
            tiles += [(f"in: {name}", pic) for name, pic in self.inputs.pictures.items()]
            lines += [f"in {name}: {text}" for name, text in self.inputs.texts.items()]
        for name, out in self.outputs.items():
            picture = out.picture()
            if picture is not None:
                tiles.append((name, picture))
            if out.kind == ModalityKind.SEQUENCE:
                unparsed = f" (unparsed: {out.parse_error})" if out.parse_error is not None else ""
                lines.append(f"{name}: {out.text}{unparsed}")
            elif picture is None:
                lines.append(f"{name}: ids {_trimmed(out.ids, out.kind)}")
        return labelled_grid(tiles, lines, size, text_width)


def fuse_outputs(samples: Sequence[GenerationOutput], transform: Any = None) -> GenerationOutput:
    """One output from N generations of one target (the paper's ensembling, Table 5).

    Image and global tokens: each generation is decoded first, then the decoded values are fused by the
    tokenizer's ``transform.fuse`` (mean for continuous maps and embeddings, renormalised for directions, a vote
    for classes and binary maps); fusing token ids instead would mix codes that mean unrelated patches.
    Sequences: the most frequent text wins (ties: the earliest draw), kept whole, since a token-wise vote of
    sentences of different lengths is not a sentence. ``ids`` of a fused image output is the per-position vote."""
    from fourm_core.inference.ensemble import ensemble

    samples = list(samples)
    if not samples:
        raise ValueError("nothing to fuse")
    first = samples[0]
    if len(samples) == 1:
        return first
    if first.kind == ModalityKind.SEQUENCE:
        texts = [s.text for s in samples]
        counts = Counter(texts)
        winner = max(texts, key=lambda t: (counts[t], -texts.index(t)))
        return dataclasses.replace(samples[texts.index(winner)], samples=samples)
    if transform is None:
        raise ValueError(f"{first.name}: fusing decoded values needs the tokenizer's transform")
    ids = ensemble([s.ids for s in samples], "vote")
    array = transform.fuse([np.asarray(s.array) for s in samples])
    return GenerationOutput(first.name, first.key, first.kind, ids, array, transform=first.transform, samples=samples)


def decode_outputs(
    pipe: Pipeline,
    ids: Mapping[str, torch.Tensor],
    targets: Sequence[Requested],
    rows: Sequence[int] | int = 0,
    image: np.ndarray | None = None,
    seconds: dict[str, float] | None = None,
    logprobs: Mapping[str, torch.Tensor] | None = None,
    grammars: Mapping[str, Any] | None = None,
) -> dict[str, GenerationOutput]:
    """Decode row(s) ``rows`` of the sampler's ``ids`` for every target (by the name it was asked for): one row as
    is, several rows (N generations of one condition) fused per target (:func:`fuse_outputs`). Sequences that
    parse are drawn by their plugin's decoder, over ``image`` (the input picture) when given. ``seconds``: when a
    dict, the wall seconds spent decoding each target are added to it. ``logprobs`` (the sampler's, per key) and
    ``grammars`` (per key, what tells items apart) give sequences their ``confidence`` and ``item_scores``."""
    from fourm_core.viz.rendering import render_output

    context = pipe.render_context(image)
    indices = [rows] if isinstance(rows, int) else list(rows)
    out = {}
    for req in targets:
        started = time.perf_counter()
        draws = []
        for row_index in indices:
            row = ids[req.key][row_index].detach().cpu()
            if req.kind == ModalityKind.SEQUENCE:
                decoded = _decode_sequence(pipe, req, row)
                if logprobs is not None and req.key in logprobs:
                    _score_sequence(decoded, logprobs[req.key][row_index], (grammars or {}).get(req.key))
                if decoded.parse_error is None:
                    decoded.rendered = render_output(pipe.registry, req.modality, decoded.array, context)
            else:
                tokenizer = pipe.tokenizer(req.modality)
                array = tokenizer.decode_raw(row[None])[0]
                transform = getattr(getattr(tokenizer, "config", None), "transform", None)
                decoded = GenerationOutput(req.name, req.key, req.kind, row, array, transform=transform)
            draws.append(decoded)
        fuse = None if req.kind == ModalityKind.SEQUENCE or len(draws) == 1 else pipe.tokenizer(req.modality).transform
        out[req.name] = fuse_outputs(draws, fuse)
        if seconds is not None:
            seconds[req.name] = seconds.get(req.name, 0.0) + time.perf_counter() - started
    return out


def _decode_sequence(pipe: Pipeline, req: Requested, row: torch.Tensor) -> GenerationOutput:
    """ids -> text (up to ``[EOS]``, padding dropped) -> the serializer's value; unparsable text is kept as text."""
    tokens = row.tolist()
    if EOS_ID in tokens:
        tokens = tokens[: tokens.index(EOS_ID)]
    tokens = [t for t in tokens if t != PAD_ID]
    text = pipe.vocabulary.decode(tokens) if tokens else ""
    text = " ".join(text.split())
    try:
        value: Any = pipe.registry.key_serializer(req.key, pipe.preset).parse(text)
        error = None
    except Exception as exc:  # any codec's complaint: the text stays available
        value, error = text, f"{type(exc).__name__}: {exc}"
    return GenerationOutput(req.name, req.key, req.kind, row, value, text=text, parse_error=error)


def _score_sequence(output: GenerationOutput, logprobs: torch.Tensor, grammar: Any) -> None:
    """Set ``output.confidence`` and, when ``grammar`` marks items, ``output.item_scores``."""
    from fourm_core.inference.confidence import item_scores, sequence_confidence

    output.confidence = sequence_confidence(logprobs.reshape(-1).tolist())
    output.item_scores = item_scores(grammar, output.ids, logprobs)


def _trimmed(ids: torch.Tensor, kind: ModalityKind) -> list[int]:
    values = [int(v) for v in torch.as_tensor(ids).reshape(-1).tolist()]
    if kind == ModalityKind.SEQUENCE and EOS_ID in values:
        values = values[: values.index(EOS_ID) + 1]
    return values


def jsonable(value: Any) -> Any:
    """Any parsed value as JSON data: pydantic models and dataclasses as dicts, arrays and tensors as lists,
    numpy scalars as numbers; anything else unknown as its string (a value is never lost to a TypeError)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def run_generation(
    pipe: Pipeline,
    batch: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    schedule: Any = None,
    seed: int = 0,
    steps: int = 8,
    temperature: float = 0.5,
    top_p: float | None = None,
    ensemble: int = 1,
    constrain: bool = True,
    prefix: Mapping[str, str | Sequence[str | None]] | None = None,
) -> list[GenerationResult]:
    """A batch of user values (``[{modality: value}, ...]``) -> one :class:`GenerationResult` per sample, all
    checks first: targets (known, predictable, tokenizer trained), inputs (known, not target-only, right shape),
    then the schedule against the model; only then the tokenizers encode the inputs and the sampler runs once for
    the whole batch. ``schedule``: a schedule, YAML path or list of steps (default:
    :func:`~fourm_core.inference.schedule.default_schedule` with ``steps`` and ``temperature``). ``ensemble``: draw
    that many generations of every sample (each chain conditions on its own earlier targets) and fuse them per
    target (:func:`fuse_outputs`). ``constrain``: decode every sequence target whose serializer has a grammar within
    it (:mod:`fourm_core.inference.constrain`), so its text parses; ``False`` samples from the raw logits.
    ``prefix``: per sequence target (name or key), the start of its string, one text for every sample or one per
    sample (``None``: none), teacher-forced before the rest is decoded (:mod:`fourm_core.inference.prefix`)."""
    from fourm_core.inference.constrain import sequence_grammars
    from fourm_core.inference.prefix import encode_prefixes
    from fourm_core.inference.requests import GenerationRequestError
    from fourm_core.inference.schedule import default_schedule, load_schedule

    samples = list(batch)
    if not samples:
        raise GenerationRequestError("no samples: give at least one input mapping")
    input_keys = sorted({pipe.resolve(name).key for sample in samples for name in sample})
    requested = validate_targets(pipe, targets, input_keys)
    if any(r.kind == ModalityKind.SEQUENCE for r in requested) and pipe.vocabulary is None:
        raise GenerationRequestError("sequence targets need the text vocabulary (--vocab)")
    if schedule is None:
        schedule = default_schedule(pipe.keys, requested, steps, temperature, top_p)
    else:
        schedule = load_schedule(schedule)
        wanted = {r.key for r in requested}
        if set(schedule.targets) != wanted:
            raise GenerationRequestError(
                f"the schedule generates {sorted(schedule.targets)}, the targets are {sorted(wanted)}"
            )
    if ensemble < 1:
        raise GenerationRequestError(f"ensemble {ensemble}: draw at least one generation")
    schedule.validate_for(pipe.keys, input_keys)
    sequences = [r.key for r in requested if r.kind == ModalityKind.SEQUENCE]
    grammars = sequence_grammars(pipe, sequences) if constrain else {}
    spans = grammars if constrain else sequence_grammars(pipe, sequences, strict=False)
    forced = encode_prefixes(pipe, prefix, sequences, len(samples), ensemble)
    sampler = pipe.sampler(grammars=grammars)
    if forced:  # the prefixes' own checks (grammar, limit) before the inputs are encoded
        sampler.check_prefixes(forced, schedule, len(samples) * ensemble)
    contents = [build_inputs(pipe, sample) for sample in samples]
    rows = [dict(c) for c in contents for _ in range(ensemble)]
    sampling: dict[str, float] = {}
    recorded: dict[str, torch.Tensor] = {}
    ids = sampler.generate(rows, schedule, seed=seed, timings=sampling, prefixes=forced, logprobs=recorded)
    by_key = {r.key: r for r in requested}
    ordered = [by_key[k] for k in schedule.targets]
    results = []
    for b, built in enumerate(contents):
        pixels = [r.name for r in built.requested.values() if r.kind == ModalityKind.PIXELS]
        image = built.pictures.get(pixels[0]) if pixels else None  # what sequence pictures are drawn over
        seconds = {r.name: sampling.get(r.key, 0.0) for r in ordered}
        draws = range(b * ensemble, (b + 1) * ensemble)
        outputs = decode_outputs(pipe, ids, ordered, draws, image, seconds, recorded, spans)
        results.append(GenerationResult(outputs, built, seed, schedule, seconds))
    return results
