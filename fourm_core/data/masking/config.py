"""Masking mixtures: the pydantic models users configure (strategies, alphas, budgets) and the file loader.

Reads the official ml-4m ``alphas_mixture`` YAML files as they are, or fourm's own :class:`MaskingMixture` layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class KeepScheme(str, Enum):
    """How the per-sequence keep probability of span masking is drawn (ml-4m's ``keep`` lists)."""

    RANDOM = "random"  # U(0, 1)
    ALL = "all"  # 1.0: the whole sequence is input (when the budget allows)
    BINARY = "binary"  # 0 or 1 with equal chance


class KeyAlphas(BaseModel):
    """Dirichlet concentration of one model key in one strategy."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input_alpha: float = Field(0.0, ge=0.0)
    target_alpha: float = Field(0.0, ge=0.0)
    keep: KeepScheme = KeepScheme.RANDOM


class MaskingStrategy(BaseModel):
    """One mixture component: per model key alphas; keys not listed get alpha 0 (never chosen)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    alphas: dict[str, KeyAlphas]


class TokenRange(BaseModel):
    """Inclusive range a token budget is drawn from uniformly (ml-4m ``input_tokens_range``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    low: int = Field(..., ge=0)
    high: int = Field(..., ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> TokenRange:
        if self.high < self.low:
            raise ValueError(f"token range high {self.high} < low {self.low}")
        return self


class MaskingMixture(BaseModel):
    """Strategies with sampling weights plus the input/target budgets (4M-21 uses 256/256)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    strategies: list[MaskingStrategy] = Field(..., min_length=1)
    weights: list[float] | None = None
    input_tokens: TokenRange = TokenRange(low=256, high=256)
    target_tokens: TokenRange = TokenRange(low=256, high=256)

    @model_validator(mode="after")
    def _weights(self) -> MaskingMixture:
        if self.weights is not None:
            if len(self.weights) != len(self.strategies):
                raise ValueError(f"{len(self.weights)} weights for {len(self.strategies)} strategies")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be non-negative with a positive sum")
        return self

    def probabilities(self) -> np.ndarray:
        """Normalised component probabilities (uniform without weights, as ml-4m's ``random.randint``)."""
        w = np.ones(len(self.strategies)) if self.weights is None else np.asarray(self.weights, dtype=float)
        return w / w.sum()

    def keys(self) -> list[str]:
        """Every model key any strategy mentions, in first-seen order."""
        seen: dict[str, None] = {}
        for s in self.strategies:
            seen.update(dict.fromkeys(s.alphas))
        return list(seen)


def _from_official(data: Mapping[str, Any]) -> MaskingMixture:
    """Official layout: ``{key: {input_alphas, target_alphas, keep?}}`` optionally under ``alphas_mixture`` with
    ``sampling_weights`` beside it; one list entry per component."""
    table = data.get("alphas_mixture", data)
    weights = data.get("sampling_weights") if "alphas_mixture" in data else None
    lengths = {len(v["input_alphas"]) for v in table.values()} | {len(v["target_alphas"]) for v in table.values()}
    if len(lengths) != 1:
        raise ValueError(f"alpha lists of different lengths: {sorted(lengths)}")
    (n,) = lengths
    strategies = []
    for i in range(n):
        alphas = {}
        for key, entry in table.items():
            keep = entry.get("keep")
            alphas[key] = KeyAlphas(
                input_alpha=float(entry["input_alphas"][i]),
                target_alpha=float(entry["target_alphas"][i]),
                keep=KeepScheme(keep[i]) if keep else KeepScheme.RANDOM,
            )
        strategies.append(MaskingStrategy(alphas=alphas))
    return MaskingMixture(strategies=strategies, weights=weights)


def load_mixture(path: str | Path, **overrides: Any) -> MaskingMixture:
    """Load a mixture from YAML or JSON: the official ml-4m ``alphas_mixture`` files as they are, or our own
    :class:`MaskingMixture` layout (``strategies`` / ``weights`` / ``input_tokens`` / ``target_tokens``).

    ``overrides`` (e.g. ``input_tokens=TokenRange(...)``) replace fields, since official files carry no budgets.
    """
    text = Path(path).read_text()
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a mixture file holds a mapping")
    mixture = MaskingMixture.model_validate(data) if "strategies" in data else _from_official(data)
    return mixture.model_copy(update=overrides) if overrides else mixture
