"""The loop MaskGIT and ROAR share: decode a set of still-masked positions per step, fix some of them.

Per step ``i`` the token schedule says how many positions ``n_i`` to fix; a scheme says which positions the
decoder predicts (:meth:`ParallelScheme.select`) and which of the predictions it keeps (:meth:`ParallelScheme.keep`).
Fixed tokens are encoder inputs of the next step, as in ml-4m.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

from fourm_core.inference.schedule import ScheduleError, StepConfig, temperature_at, tokens_per_step

if TYPE_CHECKING:
    from fourm_core.inference.schemes import SchemeJob
    from fourm_core.keys import KeyInfo

__all__ = ["ParallelScheme"]


class ParallelScheme(ABC):
    """Base of the parallel (image / global token) schemes; subclasses set ``name``, ``select`` and ``keep``."""

    name = ""

    def fits(self, info: KeyInfo) -> bool:
        return info.is_tokens and not info.is_sequence

    def check(self, step: StepConfig, info: KeyInfo, where: str) -> None:
        if info.is_sequence:
            raise ScheduleError(f"{where}: {self.name} cannot decode a sequence key; use autoregressive")
        if step.num_steps > info.max_tokens:
            raise ScheduleError(
                f"{where}: {step.num_steps} steps for {info.max_tokens} tokens (at most one step per token)"
            )

    @abstractmethod
    def select(self, known: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """(B, n) bool: the positions the decoder predicts at this step (a subset of ``~known``)."""

    @abstractmethod
    def keep(self, confidence: torch.Tensor, count: int) -> torch.Tensor:
        """(B, count) indices into the predicted positions: the predictions fixed at this step."""

    def run(self, job: SchemeJob) -> torch.Tensor:
        """Every ``max_tokens`` position of ``step.target`` filled in ``step.num_steps`` steps."""
        from fourm_core.inference.sampler import sample_tokens

        sampler, step, state, guidance, batch = job.sampler, job.step, job.state, job.guidance, job.batch
        generator, trace = job.generator, job.trace
        key, dev = step.target, sampler.device
        n = sampler.keys[key].max_tokens
        ids = torch.zeros(batch, n, dtype=torch.long, device=dev)
        known = torch.zeros(batch, n, dtype=torch.bool, device=dev)
        counts = tokens_per_step(n, step.num_steps, step.token_schedule)
        for i, count in enumerate(counts):
            selected = self.select(known, count, generator)
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
                mod_dict = sampler.model_batch(state, drop, key, entry)
                n_enc = sampler.encoder_tokens(mod_dict)
                out = sampler.model(mod_dict, n_enc, n_sel, return_logits=True, logits_for=(key,))
                logits.append(out[key][:, :n_sel])
                if trace is not None and not drop:
                    trace.append({"target": key, "step": i, "mod_dict": mod_dict, "num_encoder_tokens": n_enc})
            temperature = temperature_at(step, i, len(counts), done_fraction=float(known[0].sum()) / n)
            tokens, confidence = sample_tokens(guidance.combine(logits), temperature, step.top_k, step.top_p, generator)
            keep = self.keep(confidence, count)
            fixed = positions.gather(1, keep)
            ids.scatter_(1, fixed, tokens.gather(1, keep))
            known.scatter_(1, fixed, True)
            if trace is not None:
                trace.append({"target": key, "step": i, "fixed": fixed})
        state[key] = {"tensor": ids, "input_mask": torch.zeros_like(known)}
        return ids
