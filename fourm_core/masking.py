"""4M masking sampler: which tokens of a sample the encoder sees (inputs) and which the decoder predicts (targets).

Follows ml-4m's ``UnifiedMasking`` (reference ``ml-4m.md`` §3.2-3.3): a mixture component is picked by its
sampling weight, the input and target token budgets are split over the present modalities by Dirichlet draws with
that component's alphas, image-like tokens are chosen by random permutation and sequences by T5-style span masking
with ``[S_k]`` sentinels. Masks use ml-4m's convention: ``True`` means masked out (not an input / not a target).

The core never names a modality: everything about a model key (its masking unit, size, input/target-only flags)
comes from :class:`KeyLayout`, built from the registry by :func:`layouts_from_registry` or given by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fourm_core.spec import MaskingUnit, ModalityKind

#: Official 4M-21 text vocabulary ids (see ``fourm_core.vocab``): ``[PAD]`` 0, ``[EOS]`` 3, ``[S_k]`` = 4 + k.
PAD_ID = 0
EOS_ID = 3
SENTINEL_BASE_ID = 4
NUM_SENTINELS = 200
#: ml-4m shrinks the keep probability by this factor until the masked input fits its budget.
KEEP_PROB_DECAY = 0.9
#: ml-4m clamps alphas to this minimum so a zero alpha is a valid (degenerate) Dirichlet parameter.
MIN_ALPHA = 1e-9


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


@dataclass(frozen=True)
class KeyLayout:
    """What masking needs to know about one model key, independent of its name."""

    unit: MaskingUnit
    max_tokens: int
    input_only: bool = False
    target_only: bool = False
    #: continuous sequences (T5 embeddings): masked per row, never targets
    embedding: bool = False


def layouts_from_registry(registry: Any, preset: str = "paper") -> dict[str, KeyLayout]:
    """:class:`KeyLayout` per model key from the registry (group members share a key; the first one decides)."""
    out = {}
    for key, members in registry.model_keys(preset).items():
        spec = members[0].spec
        out[key] = KeyLayout(
            unit=spec.masking,
            max_tokens=spec.layout(preset).max_tokens,
            input_only=all(m.spec.input_only for m in members),
            target_only=all(m.spec.target_only for m in members),
            embedding=spec.kind == ModalityKind.SEQUENCE_EMBEDDING,
        )
    return out


@dataclass
class MaskedKey:
    """Masking of one model key in one sample.

    Token keys: ``input_mask`` / ``target_mask`` have one entry per token (True = not input / not target).
    Sequence keys: ``input_ids`` / ``target_ids`` are the span-masked sequences with sentinels; their masks are
    all False (every returned id is used). Embedding keys: ``input_mask`` per row, ``target_mask`` all True.
    """

    input_mask: torch.Tensor
    target_mask: torch.Tensor
    input_budget: int
    target_budget: int
    input_ids: torch.Tensor | None = None
    target_ids: torch.Tensor | None = None


def span_mask(
    units: Sequence[Sequence[int]], keep: np.ndarray, sentinel_base: int = SENTINEL_BASE_ID
) -> tuple[list[int], list[int]]:
    """ml-4m ``simple_span_masking`` / ``chunk_span_masking`` on units (tokens or whole chunks).

    Each maximal run of dropped units becomes ``[S_k]`` (k = 1, 2, ...) in the input; the target is
    ``[S_1] run1 [S_2] run2 ... [S_{n+1}]`` where the final sentinel marks the end and is always present.
    """
    inp: list[int] = []
    tgt: list[int] = []
    k = 1
    in_run = False
    for unit, kept in zip(units, keep, strict=True):
        if kept:
            inp.extend(unit)
            in_run = False
        else:
            if not in_run:
                sentinel = sentinel_base + k
                inp.append(sentinel)
                tgt.append(sentinel)
                k += 1
                in_run = True
            tgt.extend(unit)
    if k > NUM_SENTINELS - 1:
        raise ValueError(f"{k} spans exceed the {NUM_SENTINELS} sentinels")
    tgt.append(sentinel_base + k)
    return inp, tgt


def merge_spans(
    input_ids: Sequence[int], target_ids: Sequence[int], sentinel_base: int = SENTINEL_BASE_ID
) -> list[int]:
    """Inverse of :func:`span_mask` (ml-4m ``merge_span_masking``): substitute each input sentinel by its span."""
    is_sentinel = range(sentinel_base, sentinel_base + NUM_SENTINELS).__contains__
    spans: dict[int, list[int]] = {}
    current: int | None = None
    for t in target_ids:
        if is_sentinel(t):
            current = t
            spans[t] = []
        elif current is not None:
            spans[current].append(t)
    out: list[int] = []
    for t in input_ids:
        out.extend(spans.get(t, []) if is_sentinel(t) else [t])
    return out


#: One sample's content per model key: a token count (token / embedding keys), a 1-D id sequence (span keys,
#: EOS already appended) or a list of chunks of ids (chunk keys).
SampleContent = int | Sequence[int] | torch.Tensor | Sequence[Sequence[int]]


class FourMMasker:
    """Samples ml-4m style input/target masks for one sample at a time, deterministically under a seed.

    Randomness comes only from the ``numpy.random.Generator`` passed to :meth:`__call__` (or the one created from
    ``seed``), so a data loader worker can reproduce a sample's masks from ``(seed, sample index)``.
    """

    def __init__(
        self,
        layouts: Mapping[str, KeyLayout],
        mixture: MaskingMixture,
        *,
        seed: int | None = None,
        sentinel_base: int = SENTINEL_BASE_ID,
        pad_id: int = PAD_ID,
    ) -> None:
        self.layouts = dict(layouts)
        self.mixture = mixture
        self.keys = list(self.layouts)
        self.sentinel_base = sentinel_base
        self.pad_id = pad_id
        self.rng = np.random.default_rng(seed)
        self._probs = mixture.probabilities()
        # (n_strategies, n_keys) alpha tables; keys the mixture does not list get 0 (ml-4m default for unlisted).
        zero = KeyAlphas()
        table = [[s.alphas.get(k, zero) for k in self.keys] for s in mixture.strategies]
        self.input_alphas = np.array([[a.input_alpha for a in row] for row in table])
        self.target_alphas = np.array([[a.target_alpha for a in row] for row in table])
        self.keep = [[a.keep for a in row] for row in table]
        self.input_only = np.array([self.layouts[k].input_only for k in self.keys], dtype=bool)
        self.target_only = np.array([self.layouts[k].target_only for k in self.keys], dtype=bool)
        self.max_tokens = np.array([self.layouts[k].max_tokens for k in self.keys])

    # -- budgets -------------------------------------------------------------------------------------------------
    @staticmethod
    def split_budget(rng: np.random.Generator, alphas: np.ndarray, total: int) -> np.ndarray:
        """ml-4m budget split: ``floor(Dirichlet(alphas) * total)`` plus the remainder assigned by the argmax of
        one extra draw per leftover token (so near-zero alphas get nothing). Zero-length ``alphas`` gets nothing."""
        n = len(alphas)
        if n == 0 or total == 0:
            return np.zeros(n, dtype=np.int64)
        alphas = np.maximum(alphas, MIN_ALPHA)
        draws = rng.dirichlet(alphas, size=total + 1)
        bad = ~np.isfinite(draws).all(axis=1)
        if bad.any():  # underflow of every gamma draw: the mass goes to the largest alpha
            draws[bad] = np.eye(n)[np.argmax(alphas)]
        budget = np.floor(draws[0] * total).astype(np.int64)
        diff = int(total - budget.sum())
        if diff > 0:
            budget += np.bincount(draws[1 : diff + 1].argmax(axis=1), minlength=n)
        return budget

    @staticmethod
    def _length(content: SampleContent, layout: KeyLayout) -> int:
        if isinstance(content, int):
            return content
        if layout.unit == MaskingUnit.CHUNK:
            return sum(len(c) for c in content)  # type: ignore[arg-type]
        return len(content)

    def budgets(
        self, sample: Mapping[str, SampleContent], rng: np.random.Generator
    ) -> tuple[int, dict[str, int], dict[str, int], int, int]:
        """Pick a strategy and draw ``(strategy, input budgets, target budgets, total input, total target)``.

        Only present, non-empty keys compete; the input budget is capped by a key's token count, the target
        budget of a token key by what inputs left over (disjointness), of a sequence by its length."""
        idx = int(rng.choice(len(self._probs), p=self._probs))
        lo, hi = self.mixture.input_tokens.low, self.mixture.input_tokens.high
        n_in = int(rng.integers(lo, hi + 1))
        lo, hi = self.mixture.target_tokens.low, self.mixture.target_tokens.high
        n_tgt = int(rng.integers(lo, hi + 1))
        unknown = set(sample) - set(self.layouts)
        if unknown:
            raise KeyError(f"sample has keys without a layout: {sorted(unknown)}")
        length = np.array([self._length(sample[k], self.layouts[k]) if k in sample else 0 for k in self.keys])
        present = length > 0
        token_like = np.array(
            [self.layouts[k].unit == MaskingUnit.TOKEN or self.layouts[k].embedding for k in self.keys]
        )
        # token keys and embedding rows cannot use more than they have (a short caption's embedding rows cap its
        # input budget); sequences are capped at max_tokens as in ml-4m (sentinels make a masked sequence longer
        # than its content)
        cap = np.where(token_like, np.minimum(length, self.max_tokens), self.max_tokens)

        in_ok = present & ~self.target_only
        inp = np.zeros(len(self.keys), dtype=np.int64)
        inp[in_ok] = self.split_budget(rng, self.input_alphas[idx][in_ok], n_in)
        inp = np.minimum(inp, cap)

        tgt_ok = present & ~self.input_only
        tgt = np.zeros(len(self.keys), dtype=np.int64)
        tgt[tgt_ok] = self.split_budget(rng, self.target_alphas[idx][tgt_ok], n_tgt)
        tgt = np.minimum(tgt, np.where(token_like, cap - inp, cap))
        return (
            idx,
            {k: int(inp[i]) for i, k in enumerate(self.keys) if present[i]},
            {k: int(tgt[i]) for i, k in enumerate(self.keys) if present[i]},
            n_in,
            n_tgt,
        )

    # -- per key -------------------------------------------------------------------------------------------------
    @staticmethod
    def token_masks(rng: np.random.Generator, n: int, n_in: int, n_tgt: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random permutation: its first ``n_in`` positions are inputs, the next ``n_tgt`` targets (disjoint)."""
        perm = torch.from_numpy(rng.permutation(n))
        input_mask = torch.ones(n, dtype=torch.bool)
        target_mask = torch.ones(n, dtype=torch.bool)
        input_mask[perm[:n_in]] = False
        target_mask[perm[n_in : n_in + n_tgt]] = False
        return input_mask, target_mask

    def _keep_prob(self, rng: np.random.Generator, scheme: KeepScheme) -> float:
        if scheme == KeepScheme.ALL:
            return 1.0
        if scheme == KeepScheme.BINARY:
            return float(rng.integers(0, 2))
        return float(rng.random())

    def sequence_masks(
        self,
        rng: np.random.Generator,
        units: Sequence[Sequence[int]],
        n_in: int,
        n_tgt: int,
        scheme: KeepScheme,
    ) -> tuple[list[int], list[int]]:
        """ml-4m ``sequence_mask``: span-mask ``units`` so the input fits ``n_in`` (the keep probability decays
        by 0.9 until it does), then cut the target to a ``n_tgt`` window starting at a sentinel."""
        keep_prob = 0.0 if n_in == 0 else self._keep_prob(rng, scheme)
        while True:
            keep = rng.random(len(units)) <= keep_prob if keep_prob > 0 else np.zeros(len(units), dtype=bool)
            inp, tgt = span_mask(units, keep, self.sentinel_base)
            if n_in == 0:  # no input budget: the input is empty, everything is target (ml-4m)
                inp = []
                break
            if len(inp) <= n_in:
                break
            # decay; below 1e-6 drop everything (input is then the single [S_1], which fits any n_in >= 1)
            keep_prob = keep_prob * KEEP_PROB_DECAY if keep_prob > 1e-6 else 0.0
        if len(tgt) > n_tgt:
            tgt = self._target_window(rng, tgt, n_tgt)
        return inp, tgt

    def _target_window(self, rng: np.random.Generator, tgt: list[int], n_tgt: int) -> list[int]:
        if n_tgt == 0:
            return []
        t = np.asarray(tgt)
        starts = np.flatnonzero((t >= self.sentinel_base) & (t < self.sentinel_base + NUM_SENTINELS))[:-1]
        start = int(starts[rng.integers(len(starts))])
        if len(tgt) - start < n_tgt:  # too close to the end: earliest sentinel whose suffix fills the budget
            start = int(starts[np.flatnonzero(len(tgt) - starts >= n_tgt)[0]])
        return tgt[start : start + n_tgt]

    # -- entry point ---------------------------------------------------------------------------------------------
    def __call__(
        self, sample: Mapping[str, SampleContent], rng: np.random.Generator | None = None
    ) -> dict[str, MaskedKey]:
        """Mask one sample. Absent or empty keys are left out of the result (callers fill them as all-masked)."""
        rng = self.rng if rng is None else rng
        idx, inp, tgt, _, _ = self.budgets(sample, rng)
        out: dict[str, MaskedKey] = {}
        for key in self.keys:
            if key not in inp:
                continue
            layout, content = self.layouts[key], sample[key]
            n_in, n_tgt = inp[key], tgt[key]
            if layout.unit == MaskingUnit.TOKEN or layout.embedding:
                n = self._length(content, layout)
                if layout.embedding:
                    n_tgt = 0
                im, tm = self.token_masks(rng, n, n_in, n_tgt)
                out[key] = MaskedKey(im, tm, n_in, n_tgt)
                continue
            if layout.unit == MaskingUnit.CHUNK:
                units = [list(map(int, c)) for c in content]  # type: ignore[union-attr]
                units = _fit_chunks(units, layout.max_tokens)
            else:
                ids = content.tolist() if isinstance(content, torch.Tensor) else list(content)  # type: ignore[arg-type]
                units = [[int(t)] for t in ids[: layout.max_tokens]]
            i_ids, t_ids = self.sequence_masks(rng, units, n_in, n_tgt, self.keep[idx][self.keys.index(key)])
            out[key] = MaskedKey(
                input_mask=torch.zeros(len(i_ids), dtype=torch.bool),
                target_mask=torch.zeros(len(t_ids), dtype=torch.bool),
                input_budget=n_in,
                target_budget=n_tgt,
                input_ids=torch.tensor(i_ids, dtype=torch.long),
                target_ids=torch.tensor(t_ids, dtype=torch.long),
            )
        return out


def _fit_chunks(chunks: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Keep whole chunks while the cumulative length stays within ``max_tokens`` (ml-4m metadata handling)."""
    out, total = [], 0
    for c in chunks:
        total += len(c)
        if total > max_tokens:
            break
        out.append(c)
    return out


def chunk_boundaries_to_chunks(ids: Sequence[int], starts: Sequence[int]) -> list[list[int]]:
    """Split ``ids`` at ``starts`` (chunk start offsets, e.g. from ``registry.masking_chunks`` lengths)."""
    bounds = sorted(set(starts) | {0}) + [len(ids)]
    return [list(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
