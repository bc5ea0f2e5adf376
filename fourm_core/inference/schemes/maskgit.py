"""MaskGIT: every step predicts all still-masked positions and fixes the most confident ``n_i`` samples."""

from __future__ import annotations

import torch

from fourm_core.inference.schemes.parallel import ParallelScheme

__all__ = ["SCHEME", "MaskGIT"]


class MaskGIT(ParallelScheme):
    name = "maskgit"

    def select(self, known: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        return ~known

    def keep(self, confidence: torch.Tensor, count: int) -> torch.Tensor:
        return confidence.argsort(dim=1, descending=True, stable=True)[:, :count]


SCHEME = MaskGIT()
