"""Any-to-any generation with a trained :class:`~fourm_core.model.FourMNetwork` (ml-4m ``GenerationSampler``, our code).

Per schedule step (:mod:`fourm_core.inference.schedule`) one target key is generated from everything known so far:
the given inputs plus the targets of earlier steps, which become plain encoder inputs (as in ml-4m, so a chain
sequence -> global tokens -> image tokens conditions each key on the previous ones).

* How a step fills its target is its scheme (:mod:`fourm_core.inference.schemes`, one module each): MaskGIT and
  ROAR for image / global tokens, autoregressive decoding (with a key/value cache) for sequences.
* Temperature (with schedules), top-k, top-p and classifier-free guidance
  ``uncond + scale * (cond - uncond)`` computed as ``torch.lerp(uncond, cond, scale)``, which is exact at the ends:
  scale 1 gives the conditional logits bit for bit (and skips the unconditional pass), scale 0 the unconditional
  ones. The unconditional pass drops the step's ``cfg_conditions`` (default: every conditioning key).
  Multi-condition guidance (``cfg_weights``) runs one pass per weighted condition beside the unconditional one and
  sums the weighted differences; ``cfg_grow`` on the schedule adds every finished target to the guided conditions.

Batches are built in the official format for every key of the model's key table (dispatch on the
:class:`~fourm_core.keys.KeyInfo` kind only), so the image steps run the model's ordinary ``forward``. All
randomness comes from one ``torch.Generator`` seeded per call: the same seed gives the same ids.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fourm_core.data.masking import EOS_ID, NUM_SENTINELS, PAD_ID, SENTINEL_BASE_ID
from fourm_core.inference.schedule import GenerationSchedule, load_schedule
from fourm_core.inference.schemes import SchemeJob, get_scheme
from fourm_core.inference.tables import key_table_of
from fourm_core.spec import ModalityKind

__all__ = ["GenerationSampler", "Guidance", "filter_logits", "sample_tokens"]

if TYPE_CHECKING:
    from fourm_core.keys import KeyTable

Entry = dict[str, torch.Tensor]


def filter_logits(logits: torch.Tensor, top_k: int | float | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k (an int, or a float fraction of the vocabulary) and outside the nucleus of
    probability ``top_p`` to ``-inf``; the most likely token always survives."""
    vocab = logits.shape[-1]
    if top_k is not None:
        k = max(1, int(top_k * vocab)) if isinstance(top_k, float) else min(int(top_k), vocab)
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses top_p
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove), float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | float | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, probability of each chosen id)`` for logits (..., V). Temperature 0 is argmax (no randomness
    drawn); otherwise a multinomial draw from the tempered, filtered distribution."""
    shape, vocab = logits.shape[:-1], logits.shape[-1]
    logits = logits.float()
    if temperature <= 0.0:
        ids = logits.argmax(dim=-1)
        probs = filter_logits(logits, top_k, top_p).softmax(dim=-1)
    else:
        probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
        ids = torch.multinomial(probs.reshape(-1, vocab), 1, generator=generator).reshape(shape)
    return ids, probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class Guidance:
    """Decoder passes of one step and how their logits combine.

    ``drops``: the condition keys each pass leaves out. Single guidance (``weights`` None): one pass is returned
    as is; two passes ``[cond, uncond]`` give ``uncond + scale * (cond - uncond)`` as ``torch.lerp`` (exact at
    scale 0 and 1). Multi-condition (``weights``): passes ``[uncond, cond_1, ...]`` give
    ``uncond + sum_i w_i * (cond_i - uncond)``; a single condition goes through ``lerp`` too, so it equals single
    guidance bit for bit."""

    drops: list[frozenset[str]]
    weights: list[float] | None = None
    scale: float = 1.0

    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        if self.weights is None:
            if len(logits) == 1:
                return logits[0]
            cond, uncond = logits
            return torch.lerp(uncond.float(), cond.float(), self.scale)
        uncond, conds = logits[0].float(), [c.float() for c in logits[1:]]
        if len(conds) == 1:
            return torch.lerp(uncond, conds[0], self.weights[0])
        out = uncond.clone()
        for weight, cond in zip(self.weights, conds, strict=True):
            out += weight * (cond - uncond)
        return out


class GenerationSampler:
    """``GenerationSampler(model).generate(inputs, schedule, seed=0)`` -> ``{target key: ids}``.

    ``keys``: the model's key table (default: ``model.keys``, or its ``modality_info`` converted).
    ``stop_ids``: tokens that end an autoregressive span (default ``[EOS]`` and every sentinel; an empty set
    decodes to the length limit, which tests use to compare long decodes). ``grammars``: per sequence key, the
    :class:`~fourm_core.grammar.Grammar` its autoregressive steps are masked to (:mod:`fourm_core.inference.constrain`;
    keys without one are decoded unconstrained). ``vocabulary``: the text vocabulary, only to name the word of a
    refused prefix in its error.
    """

    def __init__(
        self,
        model: Any,
        first_sentinel: int = SENTINEL_BASE_ID + 1,
        eos_id: int = EOS_ID,
        stop_ids: Collection[int] | None = None,
        keys: KeyTable | None = None,
        grammars: Mapping[str, Any] | None = None,
        vocabulary: Any = None,
    ) -> None:
        self.model = model
        self.grammars = dict(grammars or {})
        self.vocabulary = vocabulary  # only to name the words of a refused prefix
        self.keys = keys if keys is not None else key_table_of(model)
        self.first_sentinel = first_sentinel
        self.eos_id = eos_id
        sentinels = range(SENTINEL_BASE_ID, SENTINEL_BASE_ID + NUM_SENTINELS)
        self.stop_ids = torch.tensor(sorted({eos_id, *sentinels} if stop_ids is None else set(stop_ids)))

    # ------------------------------------------------------------------ public
    def generate(
        self,
        inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        schedule: GenerationSchedule | Sequence[Mapping[str, Any]] | str,
        seed: int = 0,
        batch_size: int | None = None,
        use_cache: bool = True,
        trace: list[dict[str, Any]] | None = None,
        timings: dict[str, float] | None = None,
        prefixes: Mapping[str, Sequence[Sequence[int]]] | None = None,
        logprobs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate every target of ``schedule`` in order.

        ``inputs``: per key the content :class:`~fourm_core.data.pipeline.SampleBuilder` produces (token ids for
        image / global keys, normalised (C, H, W) pixels, 1-D sequence ids or chunk lists, embedding rows), for one
        sample (repeated ``batch_size`` times: N generations of one condition) or a list of samples. Returns
        (B, max_tokens) int64 ids per target; sequences end with ``[EOS]`` and are right-padded with ``[PAD]``.
        ``trace``: when a list, one record per decoder step is appended (the conditional batch, the positions
        fixed) for inspection and tests. ``timings``: when a dict, the wall seconds spent on each target key are
        added to it (what ``fourm generate`` prints per target). ``prefixes``: per sequence target, one list of
        ids per row that its autoregressive step teacher-forces before sampling the rest
        (:mod:`fourm_core.inference.prefix`; an empty list: no prefix for that row). ``logprobs``: when a dict,
        per autoregressive target the (B, max_tokens) float log-probability of every sampled id under the
        distribution it was drawn from before temperature (guidance combined, grammar mask applied), aligned with
        the returned ids; NaN for teacher-forced ids and padding (per-item confidences:
        :mod:`fourm_core.inference.confidence`).
        """
        schedule = load_schedule(schedule)
        samples = [inputs] if isinstance(inputs, Mapping) else list(inputs)
        if isinstance(inputs, Mapping):
            samples = samples * (batch_size or 1)
        elif batch_size is not None and batch_size != len(samples):
            raise ValueError(f"batch_size {batch_size} for {len(samples)} input samples")
        if not samples:
            raise ValueError("no samples: give inputs (an empty mapping with batch_size for unconditional runs)")
        keys = set().union(*(s.keys() for s in samples))
        schedule.validate_for(self.keys, keys)
        forced = self.check_prefixes(prefixes, schedule, len(samples))
        generator = torch.Generator(device=self.device).manual_seed(seed)
        state = {key: self.input_entry(key, [s.get(key) for s in samples]) for key in sorted(keys)}
        outputs: dict[str, torch.Tensor] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._fixed_decoder_order():
                for index, step in enumerate(schedule.steps):
                    started = time.perf_counter()
                    guidance = self.guidance(schedule, index, set(state))
                    job = SchemeJob(
                        self, step, state, guidance, len(samples), generator, use_cache, trace, forced, logprobs
                    )
                    outputs[step.target] = get_scheme(step.scheme).run(job)
                    if timings is not None:
                        timings[step.target] = timings.get(step.target, 0.0) + time.perf_counter() - started
        finally:
            self.model.train(was_training)
        return outputs

    def check_prefixes(
        self, prefixes: Mapping[str, Sequence[Sequence[int]]] | None, schedule: GenerationSchedule, batch: int
    ) -> dict[str, list[list[int]]]:
        """The prefixes as lists of ints, each refused before any compute unless its key is an autoregressive
        target of the schedule, it has one row per sample, and it fits the key's grammar and token limit."""
        from fourm_core.inference.prefix import check_prefix
        from fourm_core.inference.requests import GenerationRequestError

        out: dict[str, list[list[int]]] = {}
        steps = {step.target: step for step in schedule.steps}
        for key, rows in (prefixes or {}).items():
            step = steps.get(key)
            if step is None or step.scheme != "autoregressive":
                raise GenerationRequestError(f"prefix {key}: not a target the schedule decodes autoregressively")
            if len(rows) != batch:
                raise GenerationRequestError(f"prefix {key}: {len(rows)} rows for a batch of {batch}")
            n = self.keys[key].max_tokens
            limit = min(step.max_tokens or n, n)
            out[key] = [[int(t) for t in row] for row in rows]
            stops = set(self.stop_ids.tolist())
            for row in out[key]:
                check_prefix(key, row, limit, stops, self.grammars.get(key), self.vocabulary)
        return {key: rows for key, rows in out.items() if any(rows)}

    # ------------------------------------------------------------------ batches
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @contextlib.contextmanager
    def _fixed_decoder_order(self) -> Iterator[None]:
        """ml-4m shuffles the decoder's key order on every call (drawing from Python's global ``random``); with
        one target key per call the order changes nothing, so generation leaves the global RNG alone."""
        old = getattr(self.model, "shuffle_decoder_modalities", False)
        self.model.shuffle_decoder_modalities = False
        try:
            yield
        finally:
            self.model.shuffle_decoder_modalities = old

    def _length(self, key: str) -> int:
        info = self.keys[key]
        return 2 * (info.max_tokens + 1) if info.kind == ModalityKind.SEQUENCE else info.max_tokens

    def empty_entry(self, key: str, batch: int) -> Entry:
        """The official empty entry: zero data, every mask True, no decoder attention."""
        info, n, dev = self.keys[key], self._length(key), self.device
        if info.kind == ModalityKind.PIXELS:
            size = int(info.image_size or 0)
            tensor = torch.zeros(batch, info.num_channels, size, size, device=dev, dtype=self.dtype)
        elif info.kind == ModalityKind.SEQUENCE_EMBEDDING:
            tensor = torch.zeros(batch, n, int(info.feature_dim or 0), device=dev, dtype=self.dtype)
        else:
            tensor = torch.full((batch, n), PAD_ID, dtype=torch.long, device=dev)
        masks = torch.ones(batch, n, dtype=torch.bool, device=dev)
        return {
            "tensor": tensor,
            "input_mask": masks,
            "target_mask": masks.clone(),
            "decoder_attention_mask": torch.zeros(batch, n, dtype=torch.int32, device=dev),
        }

    def input_entry(self, key: str, contents: list[Any]) -> Entry:
        """A fully visible input entry from per-sample contents (``None``: the sample lacks the key)."""
        info, entry = self.keys[key], self.empty_entry(key, len(contents))
        kind, n = info.kind, info.max_tokens
        for b, content in enumerate(contents):
            if content is None:
                continue
            if kind == ModalityKind.SEQUENCE:
                ids = _sequence_ids(content, self.eos_id)[:n]
                entry["tensor"][b, : len(ids)] = ids.to(self.device)
                entry["input_mask"][b, : len(ids)] = False
                continue
            value = _as_tensor(content).to(self.device)
            if kind == ModalityKind.PIXELS:
                if tuple(value.shape) != tuple(entry["tensor"].shape[1:]):
                    raise ValueError(
                        f"input {key!r}: pixels of shape {tuple(value.shape)}, expected "
                        f"{tuple(entry['tensor'].shape[1:])}"
                    )
                entry["tensor"][b] = value.to(self.dtype)
                entry["input_mask"][b] = False
            elif kind == ModalityKind.SEQUENCE_EMBEDDING:
                rows = value.reshape(value.shape[0], -1)[:n]
                entry["tensor"][b, : len(rows)] = rows.to(self.dtype)
                entry["input_mask"][b, : len(rows)] = False
            else:
                ids = value.reshape(-1).long()
                if ids.numel() != n:
                    raise ValueError(f"input {key!r}: {ids.numel()} tokens, expected {n}")
                entry["tensor"][b] = ids
                entry["input_mask"][b] = False
        return entry

    def model_batch(
        self, state: Mapping[str, Entry], drop: Collection[str], target: str, target_entry: Entry
    ) -> dict[str, Entry]:
        """Every model key: the known ones as inputs (unless dropped for the unconditional pass), the target
        as ``target_entry``, the rest empty."""
        batch = target_entry["tensor"].shape[0]
        mod_dict = {}
        for key in self.keys:
            if key == target:
                mod_dict[key] = dict(target_entry)
            elif key in state and key not in drop:
                entry = self.empty_entry(key, batch)
                entry["tensor"], entry["input_mask"] = state[key]["tensor"], state[key]["input_mask"]
                mod_dict[key] = entry
            else:
                mod_dict[key] = self.empty_entry(key, batch)
        for key, entry in mod_dict.items():  # keys the encoder does not take are never inputs
            if key not in self.model.encoder_embeddings or not self.keys[key].input:
                entry["input_mask"] = torch.ones_like(entry["input_mask"])
        return mod_dict

    def encoder_tokens(self, mod_dict: Mapping[str, Entry]) -> int:
        """The encoder length the batch needs: the most visible input tokens of any row (at least one)."""
        counts = [(~d["input_mask"]).sum(dim=1) for k, d in mod_dict.items() if k in self.model.encoder_embeddings]
        return max(1, int(torch.stack(counts).sum(dim=0).max())) if counts else 1

    @staticmethod
    def guidance(schedule: GenerationSchedule, index: int, conditions: Collection[str]) -> Guidance:
        """The decoder passes of step ``index`` (key sets each drops) and how to combine their logits.

        Single guidance: ``[cond, uncond]``, or only ``cond`` at scale 1 (or nothing to drop) and only ``uncond``
        at scale 0. Multi-condition: ``uncond`` (every weighted key dropped), then per weighted key a pass that
        keeps only that one of them."""
        step = schedule.steps[index]
        drop, weights = schedule.guided_conditions(index, conditions)
        if weights:
            everything = frozenset(weights)
            return Guidance([everything, *(everything - {k} for k in weights)], list(weights.values()))
        if step.cfg_scale == 1.0 or not drop:
            return Guidance([frozenset()], None, 1.0)
        if step.cfg_scale == 0.0:
            return Guidance([drop], None, 1.0)
        return Guidance([frozenset(), drop], None, step.cfg_scale)


def _as_tensor(value: Any) -> torch.Tensor:
    """A content value (tensor, array, list, or a loader's one-entry dict) as a tensor."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"cannot tell which of {sorted(value)} holds the data")
        (value,) = value.values()
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value))


def _sequence_ids(content: Any, eos_id: int) -> torch.Tensor:
    """1-D ids of a sequence content (ids, or a list of id chunks), up to and including the first ``[EOS]``."""
    if isinstance(content, (list, tuple)) and content and not np.isscalar(content[0]):
        parts = [_as_tensor(c).reshape(-1).long() for c in content]
        ids = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    else:
        ids = _as_tensor(content).reshape(-1).long()
    eos = torch.nonzero(ids == eos_id).flatten()
    return ids[: int(eos[0]) + 1] if len(eos) else ids
