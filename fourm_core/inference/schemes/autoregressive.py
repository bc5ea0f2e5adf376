"""Autoregressive decoding of a sequence key: the span after the first sentinel, token by token.

``[S_1]`` is the first sentinel the masker emits, so a fully masked sequence looks exactly as in training; decoding
stops at ``[EOS]``, a sentinel or the length limit. A key with a grammar in ``sampler.grammars`` has every step's
logits masked to what its grammar allows, per row (:mod:`fourm_core.inference.constrain`). ml-4m recomputes the
whole decoder for every token; here the encoder and the cross-attention keys/values are computed once per target
and each token runs the decoder for itself against a key/value cache (:meth:`FourMNetwork.forward_decoder_cached`).
``use_cache=False`` keeps the full recomputation (the reference the cache is tested against). Every guidance pass
has its own encoding and cache, run in lockstep. A row with a prefix (``job.prefixes``,
:mod:`fourm_core.inference.prefix`) takes its ids instead of sampling while they last: they run through the decoder
and its cache and advance the grammar state exactly as sampled ids would, so the rest is decoded after them.
With ``job.logprobs`` each sampled id's log-probability is recorded (before temperature, after guidance and the
grammar mask: the model's confidence among the ids the format allows), which per-item confidences are made of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fourm_core.data.masking import PAD_ID
from fourm_core.inference.schedule import ScheduleError, StepConfig, temperature_at

if TYPE_CHECKING:
    from fourm_core.inference.schemes import SchemeJob
    from fourm_core.keys import KeyInfo

__all__ = ["SCHEME", "Autoregressive"]


class Autoregressive:
    name = "autoregressive"

    def fits(self, info: KeyInfo) -> bool:
        return info.is_sequence and info.is_tokens

    def check(self, step: StepConfig, info: KeyInfo, where: str) -> None:
        if not info.is_sequence:
            raise ScheduleError(f"{where}: autoregressive needs a sequence key, this one is {info.kind.value!r}")

    def run(self, job: SchemeJob) -> torch.Tensor:
        from fourm_core.inference.constrain import constraint_for
        from fourm_core.inference.sampler import sample_tokens

        sampler, step, state, guidance, batch = job.sampler, job.step, job.state, job.guidance, job.batch
        generator, use_cache, trace = job.generator, job.use_cache, job.trace
        key, dev, model = step.target, sampler.device, sampler.model
        n = sampler.keys[key].max_tokens
        limit = min(step.max_tokens or n, n)
        entry = sampler.empty_entry(key, batch)
        entry["tensor"][:, 0] = sampler.first_sentinel  # the input of a fully masked sequence: `[S_1]`
        entry["input_mask"][:, 0] = False
        streams = []
        for drop in guidance.drops:
            mod_dict = sampler.model_batch(state, drop, key, entry)
            n_enc = sampler.encoder_tokens(mod_dict)
            context, encoder_mask = model.encode(mod_dict, n_enc)
            cache = model.init_decoder_cache(context) if use_cache else None
            streams.append((context, encoder_mask, cache))
            if trace is not None and not drop:
                trace.append({"target": key, "step": 0, "mod_dict": mod_dict, "num_encoder_tokens": n_enc})
        head = model.decoder_embeddings[key]
        tokens = torch.full((batch, 1), sampler.first_sentinel, dtype=torch.long, device=dev)
        stop_ids = sampler.stop_ids.to(dev)
        done = torch.zeros(batch, dtype=torch.bool, device=dev)
        constraint = constraint_for(getattr(sampler, "grammars", {}), key, batch)
        forced, forcing = _forced(job, key, batch, dev)
        chosen = torch.full((batch, n), float("nan"), device=dev)
        for t in range(limit):
            logits = []
            for context, encoder_mask, cache in streams:
                if cache is not None:  # only the newest token runs through the decoder
                    y = model.forward_decoder_cached(_embed(model, key, tokens[:, -1:], t), cache, encoder_mask)
                else:  # full recomputation of every position, causal (ml-4m's sampler)
                    length = tokens.shape[1]
                    causal = torch.ones(length, length, dtype=torch.bool, device=dev).triu(1).expand(batch, -1, -1)
                    y = model.forward_decoder(_embed(model, key, tokens, 0), context, encoder_mask, causal)
                logits.append(head.forward_logits(y[:, -1]))
            force = forcing > t if t < forced.shape[1] else None
            if force is not None and bool(force.all()):  # every row is still in its prefix: nothing to sample
                new = forced[:, t]
            else:
                temperature = temperature_at(step, t, limit)
                combined = guidance.combine(logits)
                if constraint is not None:
                    combined = constraint.mask_logits(combined, done | force if force is not None else done, limit - t)
                new, _ = sample_tokens(combined, temperature, step.top_k, step.top_p, generator)
                if job.logprobs is not None:
                    logp = torch.log_softmax(combined.float(), dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
                    chosen[:, t] = logp if force is None else logp.masked_fill(force, float("nan"))
                if force is not None:
                    new = torch.where(force, forced[:, t], new)
            if constraint is not None:
                constraint.advance(new, done)
            tokens = torch.cat([tokens, new.unsqueeze(1)], dim=1)
            done |= torch.isin(new, stop_ids)
            if bool(done.all()):
                break
        ids = finish_sequences(tokens[:, 1:], stop_ids, n, sampler.eos_id)
        if job.logprobs is not None:  # NaN past each row's end (its [EOS] keeps the stop token's log-probability)
            job.logprobs[key] = chosen.masked_fill(ids == PAD_ID, float("nan")).cpu()
        generated = sampler.empty_entry(key, batch)
        generated["tensor"][:, :n] = ids
        generated["input_mask"][:, :n] = ids == PAD_ID
        state[key] = {"tensor": generated["tensor"], "input_mask": generated["input_mask"]}
        return ids


def _forced(job: SchemeJob, key: str, batch: int, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids (B, P), lengths (B,))`` of the rows' prefixes for ``key`` (P = the longest; P = 0 when none)."""
    rows = (job.prefixes or {}).get(key) or [[] for _ in range(batch)]
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((batch, width), PAD_ID, dtype=torch.long, device=dev)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long, device=dev)
    return ids, torch.tensor([len(r) for r in rows], dtype=torch.long, device=dev)


def _embed(model: Any, key: str, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Decoder input for target positions ``start ..``: token + position + modality embedding, computed as
    :meth:`SequenceDecoderEmbedding.forward_embed` does (positions past ``max_length`` use row 0)."""
    emb = model.decoder_embeddings[key]
    index = torch.arange(start, start + ids.shape[1], device=ids.device)
    index = index.masked_fill(index >= emb.max_length, 0)
    return emb.token_emb(ids) + (emb.pos_emb[0][index].unsqueeze(0) + emb.mod_emb)


def finish_sequences(decoded: torch.Tensor, stop_ids: torch.Tensor, n: int, eos_id: int) -> torch.Tensor:
    """(B, n) ids: each row's tokens before its first stop token, then ``[EOS]`` (when it stopped), padded."""
    out = torch.full((decoded.shape[0], n), PAD_ID, dtype=torch.long, device=decoded.device)
    stops = torch.isin(decoded, stop_ids)
    for b in range(decoded.shape[0]):
        hits = torch.nonzero(stops[b]).flatten()
        row = decoded[b, : int(hits[0])] if len(hits) else decoded[b]
        if len(hits):
            row = torch.cat([row, row.new_tensor([eos_id])])
        row = row[:n]
        out[b, : len(row)] = row
    return out


SCHEME = Autoregressive()
