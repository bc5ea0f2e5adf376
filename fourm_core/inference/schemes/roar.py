"""ROAR (random order autoregression): every step predicts ``n_i`` randomly chosen still-masked positions and
keeps them all."""

from __future__ import annotations

import torch

from fourm_core.inference.schemes.parallel import ParallelScheme

__all__ = ["SCHEME", "Roar"]


class Roar(ParallelScheme):
    name = "roar"

    def select(self, known: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        scores = torch.rand(*known.shape, generator=generator, device=known.device).masked_fill(known, 2.0)
        chosen = scores.argsort(dim=1)[:, :count]
        return torch.zeros_like(known).scatter(1, chosen, True)

    def keep(self, confidence: torch.Tensor, count: int) -> torch.Tensor:
        return torch.arange(confidence.shape[1], device=confidence.device).expand(confidence.shape[0], -1)


SCHEME = Roar()
