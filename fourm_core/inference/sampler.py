"""Any-to-any generation with a trained :class:`~fourm_core.model.FourMNetwork` (ml-4m ``GenerationSampler``, our code).

Per schedule step (:mod:`fourm_core.inference.schedule`) one target key is generated from everything known so far:
the given inputs plus the targets of earlier steps, which become plain encoder inputs (as in ml-4m, so a chain
sequence -> global tokens -> image tokens conditions each key on the previous ones).

* Image / global tokens: MaskGIT (every step decodes all still-masked positions and fixes the most confident
  ``n_i`` samples) or ROAR (every step decodes ``n_i`` randomly chosen positions and fixes them all); ``n_i`` from
  the cosine or linear token schedule. Fixed tokens are encoder inputs of the next step, as in ml-4m.
* Sequences: autoregressive decoding of the span after the first sentinel (``[S_1]``, the first sentinel the masker
  emits, so a fully masked sequence looks exactly as in training) until ``[EOS]`` or a sentinel or the length limit.
  ml-4m recomputes the whole decoder for every token; here the encoder and the cross-attention keys/values are
  computed once per target and each token runs the decoder for itself against a key/value cache
  (:meth:`FourM.forward_decoder_cached`). ``use_cache=False`` keeps the full recomputation (the reference the
  cache is tested against).
* Temperature (with schedules), top-k, top-p and classifier-free guidance
  ``uncond + scale * (cond - uncond)`` computed as ``torch.lerp(uncond, cond, scale)``, which is exact at the ends:
  scale 1 gives the conditional logits bit for bit (and skips the unconditional pass), scale 0 the unconditional
  ones. The unconditional pass drops the step's ``cfg_conditions`` (default: every conditioning key).
  Multi-condition guidance (``cfg_weights``) runs one pass per weighted condition beside the unconditional one and
  sums the weighted differences; ``cfg_grow`` on the schedule adds every finished target to the guided conditions.

Batches are built in the official format for every key of ``model.modality_info`` (dispatch on ``type`` only), so
the image steps run the model's ordinary :meth:`FourM.forward`. All randomness comes from one ``torch.Generator``
seeded per call: the same seed gives the same ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fourm_core.data.masking import EOS_ID, NUM_SENTINELS, PAD_ID, SENTINEL_BASE_ID
from fourm_core.inference.schedule import (
    GenerationSchedule,
    StepConfig,
    load_schedule,
    temperature_at,
    tokens_per_step,
)

__all__ = ["GenerationSampler", "filter_logits", "sample_tokens"]

_PIXELS, _SEQUENCE, _SEQUENCE_EMBEDDING = "pixels", "sequence", "sequence_embedding"
_ROAR = "roar"
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
class _Guidance:
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

    ``stop_ids``: tokens that end an autoregressive span (default ``[EOS]`` and every sentinel; an empty set
    decodes to the length limit, which tests use to compare long decodes).
    """

    def __init__(
        self,
        model: Any,
        first_sentinel: int = SENTINEL_BASE_ID + 1,
        eos_id: int = EOS_ID,
        stop_ids: Collection[int] | None = None,
    ) -> None:
        self.model = model
        self.info: Mapping[str, Mapping[str, Any]] = model.modality_info
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
    ) -> dict[str, torch.Tensor]:
        """Generate every target of ``schedule`` in order.

        ``inputs``: per key the content :class:`~fourm_core.data.pipeline.SampleBuilder` produces (token ids for
        image / global keys, normalised (C, H, W) pixels, 1-D sequence ids or chunk lists, embedding rows), for one
        sample (repeated ``batch_size`` times: N generations of one condition) or a list of samples. Returns
        (B, max_tokens) int64 ids per target; sequences end with ``[EOS]`` and are right-padded with ``[PAD]``.
        ``trace``: when a list, one record per decoder step is appended (the conditional batch, the positions
        fixed) for inspection and tests.
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
        schedule.validate_for(self.info, keys)
        generator = torch.Generator(device=self._device).manual_seed(seed)
        state = {key: self._input_entry(key, [s.get(key) for s in samples]) for key in sorted(keys)}
        outputs: dict[str, torch.Tensor] = {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._fixed_decoder_order():
                for index, step in enumerate(schedule.steps):
                    guidance = self._guidance(schedule, index, set(state))
                    if step.scheme == "autoregressive":
                        ids = self._autoregressive(step, state, guidance, len(samples), generator, use_cache, trace)
                    else:
                        ids = self._parallel(step, state, guidance, len(samples), generator, trace)
                    outputs[step.target] = ids
        finally:
            self.model.train(was_training)
        return outputs

    # ------------------------------------------------------------------ batches
    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def _dtype(self) -> torch.dtype:
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
        info = self.info[key]
        return 2 * (int(info["max_tokens"]) + 1) if info["type"] == _SEQUENCE else int(info["max_tokens"])

    def _empty(self, key: str, batch: int) -> Entry:
        """The official empty entry: zero data, every mask True, no decoder attention."""
        info, n, dev = self.info[key], self._length(key), self._device
        if info["type"] == _PIXELS:
            size = int(info["image_size"])
            tensor = torch.zeros(batch, int(info.get("num_channels", 3)), size, size, device=dev, dtype=self._dtype)
        elif info["type"] == _SEQUENCE_EMBEDDING:
            tensor = torch.zeros(batch, n, int(info["feature_dim"]), device=dev, dtype=self._dtype)
        else:
            tensor = torch.full((batch, n), PAD_ID, dtype=torch.long, device=dev)
        masks = torch.ones(batch, n, dtype=torch.bool, device=dev)
        return {
            "tensor": tensor,
            "input_mask": masks,
            "target_mask": masks.clone(),
            "decoder_attention_mask": torch.zeros(batch, n, dtype=torch.int32, device=dev),
        }

    def _input_entry(self, key: str, contents: list[Any]) -> Entry:
        """A fully visible input entry from per-sample contents (``None``: the sample lacks the key)."""
        info, entry = self.info[key], self._empty(key, len(contents))
        kind, n = info["type"], int(info["max_tokens"])
        for b, content in enumerate(contents):
            if content is None:
                continue
            if kind == _SEQUENCE:
                ids = _sequence_ids(content, self.eos_id)[:n]
                entry["tensor"][b, : len(ids)] = ids.to(self._device)
                entry["input_mask"][b, : len(ids)] = False
                continue
            value = _as_tensor(content).to(self._device)
            if kind == _PIXELS:
                if tuple(value.shape) != tuple(entry["tensor"].shape[1:]):
                    raise ValueError(
                        f"input {key!r}: pixels of shape {tuple(value.shape)}, expected "
                        f"{tuple(entry['tensor'].shape[1:])}"
                    )
                entry["tensor"][b] = value.to(self._dtype)
                entry["input_mask"][b] = False
            elif kind == _SEQUENCE_EMBEDDING:
                rows = value.reshape(value.shape[0], -1)[:n]
                entry["tensor"][b, : len(rows)] = rows.to(self._dtype)
                entry["input_mask"][b, : len(rows)] = False
            else:
                ids = value.reshape(-1).long()
                if ids.numel() != n:
                    raise ValueError(f"input {key!r}: {ids.numel()} tokens, expected {n}")
                entry["tensor"][b] = ids
                entry["input_mask"][b] = False
        return entry

    def _batch(self, state: Mapping[str, Entry], drop: Collection[str], target: str, target_entry: Entry) -> dict:
        """Every model key: the known ones as inputs (unless dropped for the unconditional pass), the target
        as ``target_entry``, the rest empty."""
        batch = target_entry["tensor"].shape[0]
        mod_dict = {}
        for key in self.info:
            if key == target:
                mod_dict[key] = dict(target_entry)
            elif key in state and key not in drop:
                entry = self._empty(key, batch)
                entry["tensor"], entry["input_mask"] = state[key]["tensor"], state[key]["input_mask"]
                mod_dict[key] = entry
            else:
                mod_dict[key] = self._empty(key, batch)
        for key, entry in mod_dict.items():  # keys the encoder does not take are never inputs
            if key not in self.model.encoder_embeddings or not self.info[key].get("input", True):
                entry["input_mask"] = torch.ones_like(entry["input_mask"])
        return mod_dict

    def _num_encoder_tokens(self, mod_dict: Mapping[str, Entry]) -> int:
        counts = [(~d["input_mask"]).sum(dim=1) for k, d in mod_dict.items() if k in self.model.encoder_embeddings]
        return max(1, int(torch.stack(counts).sum(dim=0).max())) if counts else 1

    @staticmethod
    def _guidance(schedule: GenerationSchedule, index: int, conditions: Collection[str]) -> _Guidance:
        """The decoder passes of step ``index`` (key sets each drops) and how to combine their logits.

        Single guidance: ``[cond, uncond]``, or only ``cond`` at scale 1 (or nothing to drop) and only ``uncond``
        at scale 0. Multi-condition: ``uncond`` (every weighted key dropped), then per weighted key a pass that
        keeps only that one of them."""
        step = schedule.steps[index]
        drop, weights = schedule.guided_conditions(index, conditions)
        if weights:
            everything = frozenset(weights)
            return _Guidance([everything, *(everything - {k} for k in weights)], list(weights.values()))
        if step.cfg_scale == 1.0 or not drop:
            return _Guidance([frozenset()], None, 1.0)
        if step.cfg_scale == 0.0:
            return _Guidance([drop], None, 1.0)
        return _Guidance([frozenset(), drop], None, step.cfg_scale)

    # ------------------------------------------------------------------ image / global tokens
    def _parallel(
        self,
        step: StepConfig,
        state: dict[str, Entry],
        guidance: _Guidance,
        batch: int,
        generator: torch.Generator,
        trace: list[dict[str, Any]] | None,
    ) -> torch.Tensor:
        """MaskGIT or ROAR over all ``max_tokens`` positions of ``step.target``."""
        key, dev = step.target, self._device
        n = int(self.info[key]["max_tokens"])
        ids = torch.zeros(batch, n, dtype=torch.long, device=dev)
        known = torch.zeros(batch, n, dtype=torch.bool, device=dev)
        counts = tokens_per_step(n, step.num_steps, step.token_schedule)
        for i, count in enumerate(counts):
            if step.scheme == _ROAR:  # random order: `count` of the still-masked positions, decoded and all kept
                scores = torch.rand(batch, n, generator=generator, device=dev).masked_fill(known, 2.0)
                chosen = scores.argsort(dim=1)[:, :count]
                selected = torch.zeros_like(known).scatter(1, chosen, True)
            else:
                selected = ~known
            n_sel = int(selected[0].sum())
            positions = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :n_sel]
            attn = torch.zeros(batch, n, dtype=torch.int32, device=dev)
            attn.scatter_(1, positions[:, :1], n_sel)  # full attention among this step's targets
            entry = {
                "tensor": ids.clone(),
                "input_mask": ~known,
                "target_mask": ~selected,
                "decoder_attention_mask": attn,
            }
            logits = []
            for drop in guidance.drops:
                mod_dict = self._batch(state, drop, key, entry)
                n_enc = self._num_encoder_tokens(mod_dict)
                logits.append(self.model(mod_dict, n_enc, n_sel, return_logits=True, logits_for=(key,))[key][:, :n_sel])
                if trace is not None and not drop:
                    trace.append({"target": key, "step": i, "mod_dict": mod_dict, "num_encoder_tokens": n_enc})
            temperature = temperature_at(step, i, len(counts), done_fraction=float(known[0].sum()) / n)
            tokens, confidence = sample_tokens(guidance.combine(logits), temperature, step.top_k, step.top_p, generator)
            if step.scheme == _ROAR:
                keep = torch.arange(n_sel, device=dev).expand(batch, -1)
            else:  # MaskGIT: the most confident samples
                keep = confidence.argsort(dim=1, descending=True, stable=True)[:, :count]
            fixed = positions.gather(1, keep)
            ids.scatter_(1, fixed, tokens.gather(1, keep))
            known.scatter_(1, fixed, True)
            if trace is not None:
                trace.append({"target": key, "step": i, "fixed": fixed})
        state[key] = {"tensor": ids, "input_mask": torch.zeros_like(known)}
        return ids

    # ------------------------------------------------------------------ sequences
    def _sequence_embed(self, key: str, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Decoder input for target positions ``start ..``: token + position + modality embedding, computed as
        :meth:`SequenceDecoderEmbedding.forward_embed` does (positions past ``max_length`` use row 0)."""
        emb = self.model.decoder_embeddings[key]
        index = torch.arange(start, start + ids.shape[1], device=ids.device)
        index = index.masked_fill(index >= emb.max_length, 0)
        return emb.token_emb(ids) + (emb.pos_emb[0][index].unsqueeze(0) + emb.mod_emb)

    def _autoregressive(
        self,
        step: StepConfig,
        state: dict[str, Entry],
        guidance: _Guidance,
        batch: int,
        generator: torch.Generator,
        use_cache: bool,
        trace: list[dict[str, Any]] | None,
    ) -> torch.Tensor:
        """Decode the span after ``[S_1]`` token by token; every pass (conditional / unconditional) has its own
        encoding and, with ``use_cache``, its own key/value cache, run in lockstep."""
        key, dev, model = step.target, self._device, self.model
        n = int(self.info[key]["max_tokens"])
        limit = min(step.max_tokens or n, n)
        entry = self._empty(key, batch)
        entry["tensor"][:, 0] = self.first_sentinel  # the input of a fully masked sequence: `[S_1]`
        entry["input_mask"][:, 0] = False
        streams = []
        for drop in guidance.drops:
            mod_dict = self._batch(state, drop, key, entry)
            n_enc = self._num_encoder_tokens(mod_dict)
            context, encoder_mask = model.encode(mod_dict, n_enc)
            cache = model.init_decoder_cache(context) if use_cache else None
            streams.append((context, encoder_mask, cache))
            if trace is not None and not drop:
                trace.append({"target": key, "step": 0, "mod_dict": mod_dict, "num_encoder_tokens": n_enc})
        head = model.decoder_embeddings[key]
        tokens = torch.full((batch, 1), self.first_sentinel, dtype=torch.long, device=dev)
        stop_ids = self.stop_ids.to(dev)
        done = torch.zeros(batch, dtype=torch.bool, device=dev)
        for t in range(limit):
            logits = []
            for context, encoder_mask, cache in streams:
                if cache is not None:  # only the newest token runs through the decoder
                    y = model.forward_decoder_cached(self._sequence_embed(key, tokens[:, -1:], t), cache, encoder_mask)
                else:  # full recomputation of every position, causal (ml-4m's sampler)
                    length = tokens.shape[1]
                    causal = torch.ones(length, length, dtype=torch.bool, device=dev).triu(1).expand(batch, -1, -1)
                    y = model.forward_decoder(self._sequence_embed(key, tokens, 0), context, encoder_mask, causal)
                logits.append(head.forward_logits(y[:, -1]))
            temperature = temperature_at(step, t, limit)
            new, _ = sample_tokens(guidance.combine(logits), temperature, step.top_k, step.top_p, generator)
            tokens = torch.cat([tokens, new.unsqueeze(1)], dim=1)
            done |= torch.isin(new, stop_ids)
            if bool(done.all()):
                break
        ids = self._finish_sequences(tokens[:, 1:], stop_ids, n)
        generated = self._empty(key, batch)
        generated["tensor"][:, :n] = ids
        generated["input_mask"][:, :n] = ids == PAD_ID
        state[key] = {"tensor": generated["tensor"], "input_mask": generated["input_mask"]}
        return ids

    def _finish_sequences(self, decoded: torch.Tensor, stop_ids: torch.Tensor, n: int) -> torch.Tensor:
        """(B, n) ids: each row's tokens before its first stop token, then ``[EOS]`` (when it stopped), padded."""
        out = torch.full((decoded.shape[0], n), PAD_ID, dtype=torch.long, device=decoded.device)
        stops = torch.isin(decoded, stop_ids)
        for b in range(decoded.shape[0]):
            hits = torch.nonzero(stops[b]).flatten()
            row = decoded[b, : int(hits[0])] if len(hits) else decoded[b]
            if len(hits):
                row = torch.cat([row, row.new_tensor([self.eos_id])])
            row = row[:n]
            out[b, : len(row)] = row
        return out


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
