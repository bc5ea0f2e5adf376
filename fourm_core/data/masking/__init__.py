"""4M masking sampler: which tokens of a sample the encoder sees (inputs) and which the decoder predicts (targets).

Follows ml-4m's ``UnifiedMasking`` (reference ``ml-4m.md`` §3.2-3.3): a mixture component is picked by its
sampling weight, the input and target token budgets are split over the present modalities by Dirichlet draws with
that component's alphas, image-like tokens are chosen by random permutation and sequences by T5-style span masking
with ``[S_k]`` sentinels. Masks use ml-4m's convention: ``True`` means masked out (not an input / not a target).

One deliberate difference (``FourMMasker(redistribute=True)``, the default): budget that a key cannot hold is not
lost as in ml-4m (on 4M-21-like samples a fifth of the input budget, a third of the inputs actually used) but
water-filled over the keys of the same draw that have room, in proportion to their Dirichlet shares; keys with
alpha 0 never receive any. ``redistribute=False`` gives ml-4m's budgets.

The sampler runs per sample in a data loader worker, so it is written for one core: plain Python over the ~20 keys
for the budgets, a fixed number of numpy calls per sequence with budget and for all token keys together, numpy
arrays inside :class:`MaskedKey` (read as torch tensors on access).

The core never names a modality: everything about a model key (its masking unit, size, input/target-only flags)
comes from :class:`KeyLayout`, built from the registry by :func:`layouts_from_registry` or given by the caller.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import accumulate, chain
from pathlib import Path
from typing import Any, NamedTuple

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


ArrayLike = np.ndarray | torch.Tensor


class _TorchField:
    """Attribute stored as given (numpy array or torch tensor) and read as a torch tensor.

    The masker builds numpy arrays: per call they cost a fraction of a torch tensor, and a sample has two masks
    (plus ids) for each of ~20 keys. ``torch.from_numpy`` shares the memory, so converting on first access is
    free of copies and callers keep the old torch-typed attributes."""

    def __init__(self, ids: str | None = None) -> None:
        #: for a mask: the ids field it defaults to (all False, one entry per id) when given as ``None``
        self.ids_slot = None if ids is None else "_" + ids

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = getattr(obj, self.slot)
        if value is None and self.ids_slot is not None:  # a sequence's mask: every id is used
            value = _mask(len(getattr(obj, self.ids_slot)), False)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
            setattr(obj, self.slot, value)
        return value

    def __set__(self, obj: Any, value: ArrayLike | None) -> None:
        setattr(obj, self.slot, value)


def _as_numpy(value: ArrayLike | None) -> np.ndarray | None:
    if value is None or isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().numpy()


class MaskedKey:
    """Masking of one model key in one sample.

    Token keys: ``input_mask`` / ``target_mask`` have one entry per token (True = not input / not target).
    Sequence keys: ``input_ids`` / ``target_ids`` are the span-masked sequences with sentinels; their masks are
    all False (every returned id is used). Embedding keys: ``input_mask`` per row, ``target_mask`` all True.

    The fields accept numpy arrays or torch tensors and read as torch tensors (see :class:`_TorchField`);
    :meth:`arrays` gives numpy views for consumers that stay in numpy. A sequence key's masks may be given as
    ``None``: all False, one entry per id (the masker does so; they are built on first access).
    """

    __slots__ = ("_input_mask", "_target_mask", "input_budget", "target_budget", "_input_ids", "_target_ids")

    input_mask: torch.Tensor = _TorchField("input_ids")  # type: ignore[assignment]
    target_mask: torch.Tensor = _TorchField("target_ids")  # type: ignore[assignment]
    input_ids: torch.Tensor | None = _TorchField()  # type: ignore[assignment]
    target_ids: torch.Tensor | None = _TorchField()  # type: ignore[assignment]

    def __init__(
        self,
        input_mask: ArrayLike | None,
        target_mask: ArrayLike | None,
        input_budget: int,
        target_budget: int,
        input_ids: ArrayLike | None = None,
        target_ids: ArrayLike | None = None,
    ) -> None:
        self._input_mask = input_mask
        self._target_mask = target_mask
        self.input_budget = input_budget
        self.target_budget = target_budget
        self._input_ids = input_ids
        self._target_ids = target_ids

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(input_mask, target_mask, input_ids, target_ids)`` as numpy arrays (views, no copies)."""
        return (
            _as_numpy(self.input_mask),  # type: ignore[return-value]
            _as_numpy(self.target_mask),  # type: ignore[arg-type]
            _as_numpy(self._input_ids),
            _as_numpy(self._target_ids),
        )

    def __repr__(self) -> str:
        im, tm, ii, ti = self.arrays()
        ids = "" if ii is None or ti is None else f", input_ids={ii.tolist()}, target_ids={ti.tolist()}"
        return (
            f"MaskedKey(inputs={int((~im).sum())}/{len(im)}, targets={int((~tm).sum())}/{len(tm)}, "
            f"input_budget={self.input_budget}, target_budget={self.target_budget}{ids})"
        )


def span_mask(
    units: Sequence[Sequence[int]], keep: np.ndarray, sentinel_base: int = SENTINEL_BASE_ID
) -> tuple[list[int], list[int]]:
    """ml-4m ``simple_span_masking`` / ``chunk_span_masking`` on units (tokens or whole chunks).

    Each maximal run of dropped units becomes ``[S_k]`` (k = 1, 2, ...) in the input; the target is
    ``[S_1] run1 [S_2] run2 ... [S_{n+1}]`` where the final sentinel marks the end and is always present.
    Reference implementation: the masker uses the vectorised :func:`_span_arrays`, which tests compare to this.
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


#: Reusable constants: numpy's per-call overhead dominates on arrays of a few hundred entries, so the hot paths
#: copy or slice these instead of calling ``np.ones`` / ``np.arange`` per key.
_TEMPLATE_SIZE = 4096
_ALL_TRUE = np.ones(_TEMPLATE_SIZE, dtype=bool)
_ALL_FALSE = np.zeros(_TEMPLATE_SIZE, dtype=bool)
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_SENTINEL_OFFSETS = np.arange(1, NUM_SENTINELS + 1, dtype=np.int64)
#: ``KEEP_PROB_DECAY ** t``: the keep probability of span-masking trial t (p0 * 0.9^t; 0.9^400 is ~4e-19)
_DECAY_POWERS = KEEP_PROB_DECAY ** np.arange(400, dtype=float)
#: A keep probability at most this small is the last nonzero trial; every later trial keeps nothing.
_KEEP_PROB_FLOOR = 1e-6


def _mask(n: int, value: bool) -> np.ndarray:
    """A fresh (writable) bool array of ``n`` copies of ``value``."""
    if n <= _TEMPLATE_SIZE:
        return (_ALL_TRUE if value else _ALL_FALSE)[:n].copy()
    return np.full(n, value, dtype=bool)


def _span_arrays(
    ids: np.ndarray,
    lens: np.ndarray | None,
    keep: np.ndarray,
    sentinel_base: int = SENTINEL_BASE_ID,
    want_input: bool = True,
    want_target: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`span_mask` on a flat id array, in a fixed number of numpy operations instead of a Python loop.

    ``ids`` holds the units' tokens back to back; ``lens`` the (non-empty) unit lengths, ``None`` for one token
    per unit. A side not wanted (no budget for it) comes back empty. See :func:`_spans`."""
    inp, tgt, _, _ = _spans(ids, lens, keep, sentinel_base, want_input, want_target)
    return inp, tgt


#: ``[S_1], [S_2], ...`` ids per sentinel base (a masker's base never changes: one array per masker)
_SENTINELS: dict[int, np.ndarray] = {}
#: the run starts of a sequence dropped whole: one run, from token 0
_FIRST_START = np.zeros(1, dtype=np.int64)


def _spans(
    ids: np.ndarray, lens: np.ndarray | None, keep: np.ndarray, sentinel_base: int, want_input: bool, want_target: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(input, target, token index of each run's first token, dropped per token)`` of :func:`_span_arrays`.

    Works per token: a dropped token whose predecessor is kept (or that comes first) opens a run, which is
    exactly the first token of the first dropped unit of a run, since units are dropped whole. The run starts
    and dropped flags let :meth:`FourMMasker._sequence_np` find a run's sentinel in the target without
    searching the target for sentinel ids. A sequence dropped whole (half the calls on 4M-21 samples: keys
    without input budget, trials that keep nothing) takes a shortcut: input ``[S_1]``, target
    ``[S_1] ids [S_2]``; its "dropped" flags are not returned then (only one run, nothing to look up)."""
    n = len(ids)
    sentinels = _SENTINELS.get(sentinel_base)
    if sentinels is None:
        sentinels = _SENTINELS.setdefault(sentinel_base, _SENTINEL_OFFSETS + sentinel_base)
    if n and not keep.any():  # half the calls (no input budget, or a trial that kept nothing): one run
        inp = sentinels[:1].copy() if want_input else _EMPTY_IDS
        if not want_target:
            return inp, _EMPTY_IDS, _FIRST_START, keep
        tgt = np.empty(n + 2, dtype=np.int64)
        tgt[0], tgt[n + 1] = sentinels[0], sentinels[1]
        tgt[1 : n + 1] = ids
        return inp, tgt, _FIRST_START, keep
    kept = keep if lens is None else np.repeat(keep, lens)
    dropped = ~kept
    opens = dropped.copy()
    opens[1:] &= kept[:-1]
    starts = np.flatnonzero(opens)
    runs = len(starts)
    if runs + 1 > NUM_SENTINELS - 1:
        raise ValueError(f"{runs + 1} spans exceed the {NUM_SENTINELS} sentinels")
    # per token: its run's sentinel where it opens a run, then the token itself; a closing row for [S_{runs+1}]
    pairs = np.empty((n + 1, 2), dtype=np.int64)
    pairs[:n, 1] = ids
    pairs[starts, 0] = sentinels[:runs]
    pairs[n, 0] = sentinel_base + runs + 1
    inp = np.where(kept, ids, pairs[:n, 0])[kept | opens] if want_input else _EMPTY_IDS
    if not want_target:
        return inp, _EMPTY_IDS, starts, dropped
    used = np.empty((n + 1, 2), dtype=bool)
    used[:n, 0] = opens
    used[:n, 1] = dropped
    used[n] = (True, False)
    return inp, pairs[used], starts, dropped


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


def _apportion(shares: Sequence[float], total: int, first: Sequence[bool] | None = None) -> list[int]:
    """Integer split of ``total`` by ``shares`` (summing to 1): ``floor(shares * total)``, then one more token
    each to the largest fractional parts (Hamilton's largest remainder method). Deterministic, no random draws;
    ``first`` marks keys that come before all others for the remainder (positive alphas before zero ones).
    Plain Python: for the ~20 keys of a sample it is several times faster than numpy's per-call overhead."""
    x = [v * total for v in shares]
    out = list(map(int, x))  # floor: shares are non-negative
    diff = total - sum(out)
    if diff > 0:
        if first is None:
            frac = [v - o for v, o in zip(x, out, strict=True)]
        else:
            frac = [v - o if f else v - o - 2.0 for v, o, f in zip(x, out, first, strict=True)]
        for i in sorted(range(len(x)), key=frac.__getitem__, reverse=True)[:diff]:
            out[i] += 1
    return out


def _level(cap: Sequence[int], weights: Sequence[float], total: int) -> list[int]:
    """Water-filling in closed form: integers ``x <= cap`` with ``sum(x) = min(total, sum of cap where weight > 0)``
    and ``x ~ min(cap, lambda * weight)`` (one water level ``lambda`` for all keys with room), zero where the
    weight is 0. Keys saturate in the order of ``cap / weight``; the rest split the remainder in proportion to
    their weights (largest remainders for the integer part, which never overflows a cap: those keys sit strictly
    below theirs)."""
    out = [0] * len(cap)
    # (ratio, index) pairs sort like the stable sort by ratio; plain tuples, no key function per element
    order = sorted([(c / w, i) for i, (c, w) in enumerate(zip(cap, weights, strict=True)) if w > 0.0])
    keys = [i for _, i in order]
    # weight of the keys from k on, summed from the end (no cancellation as subtracting would cause)
    suffix = list(accumulate(reversed([weights[i] for i in keys]), initial=0.0))[::-1]
    left = total
    for k, i in enumerate(keys):
        c = cap[i]
        if c <= left and c * suffix[k] <= left * weights[i]:  # full at the current level
            out[i] = c
            left -= c
            continue
        rest = keys[k:]
        s = suffix[k]
        for i2, v in zip(rest, _apportion([weights[i2] / s for i2 in rest], left), strict=True):
            c = cap[i2]
            out[i2] = v if v < c else c
        break
    return out


def _water_fill(
    budget: list[int], cap: Sequence[int], weights: Sequence[float], total: int, fallback: Sequence[float]
) -> list[int]:
    """Cap ``budget`` at ``cap`` and hand what the caps cut off to keys with room, in proportion to ``weights``,
    until ``total`` is used up or no key with a positive weight has room; then the same with ``fallback``.

    Keys with weight 0 keep their capped budget; the others share the rest at one water level (:func:`_level`):
    the same as repeatedly giving the leftover to keys with room in proportion to their weights, in one pass.
    ``fallback`` (the alphas) serves keys whose Dirichlet share came out exactly 0 although their alpha is
    positive: numpy's small-alpha Dirichlet (beta stick-breaking) underflows to 0 often, e.g. in ~2% of the
    shares at alpha 0.05. Keys with weight and fallback 0 (alpha 0) never get anything beyond their draw."""
    out = list(map(min, budget, cap))
    if sum(out) >= total:
        return out
    free = [w <= 0.0 for w in weights]
    left = total - sum(o for o, f in zip(out, free, strict=True) if f)
    level = _level(cap, weights, left)
    out = [o if f else v for o, v, f in zip(out, level, free, strict=True)]
    left = total - sum(out)
    if left > 0:  # keys with a positive alpha but a zero share, in proportion to their alphas
        room = [c - o if f and fb > 0.0 else 0 for c, o, f, fb in zip(cap, out, free, fallback, strict=True)]
        extra = _level(room, [fb if r > 0 else 0.0 for fb, r in zip(fallback, room, strict=True)], left)
        out = [o + e for o, e in zip(out, extra, strict=True)]
    return out


class _Side(NamedTuple):
    """The keys of a sample that compete for one budget (inputs or targets) under one strategy."""

    pos: list[int]  # positions in the sample's present keys
    alphas: np.ndarray  # clamped to MIN_ALPHA
    positive: list[bool]  # alpha > 0: may receive redistributed budget
    token_like: list[bool]
    max_tokens: list[int]
    fallback: list[float]  # the clamped alphas where positive, else 0: the weights of _water_fill's fallback


class _Plan(NamedTuple):
    inputs: _Side
    targets: _Side


class FourMMasker:
    """Samples ml-4m style input/target masks for one sample at a time, deterministically under a seed.

    Randomness comes only from the ``numpy.random.Generator`` passed to :meth:`__call__` (or the one created from
    ``seed``), so a data loader worker can reproduce a sample's masks from ``(seed, sample index)``.

    ``redistribute`` (default): budget a key cannot hold goes to the other keys of the draw (see :meth:`budgets`),
    so the encoder and decoder get the full ``n_in`` / ``n_tgt`` tokens whenever the sample has them. ``False``
    reproduces ml-4m, where budget cut off by the caps is lost (batches carry that much padding).

    Per sample the work is Python over the ~20 keys for the budgets, a fixed number of numpy calls for all token
    keys with budget together (one block of uniform keys, :func:`_flat_token_masks`) and per sequence with
    budget (a vectorised span masking, with a shortcut for sequences dropped whole); keys without budget cost no
    random draw.

    Random stream: for the same generator state, budgets and sequence masks are those of the previous
    (per-key ``rng.permuted``) version; token masks follow the same law from a different stream.
    """

    def __init__(
        self,
        layouts: Mapping[str, KeyLayout],
        mixture: MaskingMixture,
        *,
        seed: int | None = None,
        sentinel_base: int = SENTINEL_BASE_ID,
        pad_id: int = PAD_ID,
        redistribute: bool = True,
    ) -> None:
        self.layouts = dict(layouts)
        self.mixture = mixture
        self.keys = list(self.layouts)
        self.sentinel_base = sentinel_base
        self.pad_id = pad_id
        self.redistribute = redistribute
        self.rng = np.random.default_rng(seed)
        self._probs = mixture.probabilities()
        self._cum_probs = np.cumsum(self._probs).tolist()
        # (n_strategies, n_keys) alpha tables; keys the mixture does not list get 0 (ml-4m default for unlisted).
        zero = KeyAlphas()
        table = [[s.alphas.get(k, zero) for k in self.keys] for s in mixture.strategies]
        self.input_alphas = np.array([[a.input_alpha for a in row] for row in table]).reshape(len(table), -1)
        self.target_alphas = np.array([[a.target_alpha for a in row] for row in table]).reshape(len(table), -1)
        self.keep = [[a.keep for a in row] for row in table]
        self.input_only = np.array([self.layouts[k].input_only for k in self.keys], dtype=bool)
        self.target_only = np.array([self.layouts[k].target_only for k in self.keys], dtype=bool)
        self.max_tokens = np.array([self.layouts[k].max_tokens for k in self.keys], dtype=np.int64)
        # plain-Python copies for the per-sample path
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._plan_cache: dict[tuple[int, tuple[int, ...]], _Plan] = {}
        self._max = self.max_tokens.tolist()
        # token keys and embedding rows: one mask entry per token / row; other keys are span or chunk sequences
        self._token_like = [self.layouts[k].unit == MaskingUnit.TOKEN or self.layouts[k].embedding for k in self.keys]
        self._chunked = [self.layouts[k].unit == MaskingUnit.CHUNK and not self.layouts[k].embedding for k in self.keys]
        self._input_ok = [not t for t in self.target_only.tolist()]
        # embedding rows are never targets (they have no vocabulary to predict)
        self._target_ok = [not (self.layouts[k].input_only or self.layouts[k].embedding) for k in self.keys]

    # -- budgets -------------------------------------------------------------------------------------------------
    @staticmethod
    def dirichlet_shares(rng: np.random.Generator, alphas: Sequence[float] | np.ndarray) -> list[float]:
        """One Dirichlet draw with alphas clamped to ``MIN_ALPHA`` (as ml-4m); if every gamma draw underflows the
        mass goes to the largest alpha. A single key needs no draw."""
        clamped = np.maximum(np.asarray(alphas, dtype=float), MIN_ALPHA)
        if len(clamped) == 1:
            return [1.0]
        shares = rng.dirichlet(clamped).tolist()
        if not math.isfinite(sum(shares)):
            best = int(np.argmax(clamped))
            shares = [float(i == best) for i in range(len(clamped))]
        return shares

    @staticmethod
    def split_budget(rng: np.random.Generator, alphas: np.ndarray, total: int) -> np.ndarray:
        """ml-4m budget split: ``Dirichlet(alphas) * total`` rounded to integers summing to ``total``.

        ml-4m floors the shares and assigns each leftover token to the argmax of one more Dirichlet draw, i.e.
        ``total + 1`` draws per split. Here the remainder (fewer tokens than keys) goes to the largest fractional
        parts of the same draw: one draw, the same expected shares up to under a token, and keys with alpha 0
        come after every key with a positive alpha. Zero-length ``alphas`` gets nothing."""
        alphas = np.asarray(alphas, dtype=float)
        if len(alphas) == 0 or total == 0:
            return np.zeros(len(alphas), dtype=np.int64)
        shares = FourMMasker.dirichlet_shares(rng, alphas)
        return np.array(_apportion(shares, total, (alphas > 0).tolist()), dtype=np.int64)

    def _plan(self, idx: int, present: tuple[int, ...]) -> _Plan:
        """Which of the ``present`` keys compete for inputs / targets in strategy ``idx``, with their clamped
        alphas (arrays, as ``rng.dirichlet`` takes them) and flags; cached, since samples repeat a few key sets."""
        plan = self._plan_cache.get((idx, present))
        if plan is None:
            sides = []
            for table, ok in ((self.input_alphas, self._input_ok), (self.target_alphas, self._target_ok)):
                pos = [j for j, i in enumerate(present) if ok[i]]
                keys = [present[j] for j in pos]
                raw = table[idx, keys]
                clamped = np.maximum(raw, MIN_ALPHA)
                positive = (raw > 0).tolist()
                sides.append(
                    _Side(
                        pos,
                        clamped,
                        positive,
                        [self._token_like[i] for i in keys],
                        [self._max[i] for i in keys],
                        [float(a) if p else 0.0 for a, p in zip(clamped.tolist(), positive, strict=True)],
                    )
                )
            plan = _Plan(*sides)
            if len(self._plan_cache) >= 4096:
                self._plan_cache.clear()
            self._plan_cache[(idx, present)] = plan
        return plan

    def _allocate(
        self,
        rng: np.random.Generator,
        alphas: np.ndarray,
        positive: list[bool],
        cap: list[int],
        total: int,
        fallback: list[float] | None = None,
    ) -> list[int]:
        """Split ``total`` by one Dirichlet draw with (clamped) ``alphas``, capped at ``cap``; with redistribution
        what the caps cut off is water-filled over keys with a positive alpha (alpha 0 means "never", as
        rgb-to-all strategies rely on: such keys keep only what the draw itself gave them)."""
        if len(positive) == 1:
            shares = [1.0]
        else:
            shares = rng.dirichlet(alphas).tolist()
            if not math.isfinite(sum(shares)):  # every gamma draw underflowed: all to the largest alpha
                best = int(np.argmax(alphas))
                shares = [float(i == best) for i in range(len(positive))]
        budget = _apportion(shares, total, positive)
        capped = list(map(min, budget, cap))
        if not self.redistribute or sum(capped) == total:
            return capped
        weights = [s if p else 0.0 for s, p in zip(shares, positive, strict=True)]
        if fallback is None:
            fallback = [float(a) if p else 0.0 for a, p in zip(alphas.tolist(), positive, strict=True)]
        return _water_fill(capped, cap, weights, total, fallback)

    def _scan(
        self, sample: Mapping[str, SampleContent]
    ) -> tuple[list[int], list[int], list[int], dict[int, tuple[np.ndarray, np.ndarray | None]]]:
        """Present keys in key order with their content length and capacity in tokens (token count capped at
        ``max_tokens``; for a sequence its tokens after the ``max_tokens`` cut), and the sequences as flat id
        arrays with unit lengths (``None`` for one token per unit)."""
        found: list[tuple[int, int, int]] = []
        units: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        unknown = []
        index, token_like, chunked, max_tokens = self._index, self._token_like, self._chunked, self._max
        for key, content in sample.items():
            i = index.get(key)
            if i is None:
                unknown.append(key)
                continue
            if type(content) is int or isinstance(content, np.integer):
                n = int(content)
                tokens = min(n, max_tokens[i])
            elif token_like[i]:
                n = len(content)  # type: ignore[arg-type]
                tokens = min(n, max_tokens[i])
            elif chunked[i]:
                ids, lens, n = _chunk_ids(content, max_tokens[i])  # type: ignore[arg-type]
                units[i] = (ids, lens)
                tokens = len(ids)
            else:
                if type(content) is torch.Tensor:  # len() of a tensor costs several times that of an array
                    content = content.numpy()
                n = len(content)  # type: ignore[arg-type]
                ids = _span_ids(content, max_tokens[i])  # type: ignore[arg-type]
                units[i] = (ids, None)
                tokens = len(ids)
            if n > 0:
                found.append((i, n, tokens))
        if unknown:
            raise KeyError(f"sample has keys without a layout: {sorted(unknown)}")
        found.sort()
        return [f[0] for f in found], [f[1] for f in found], [f[2] for f in found], units

    def _draw(
        self, present: list[int], tokens: list[int], rng: np.random.Generator
    ) -> tuple[int, list[int], list[int], int, int]:
        """Strategy, input and target budgets of the ``present`` keys, total budgets."""
        idx = 0
        if len(self._cum_probs) > 1:
            u = rng.random() * self._cum_probs[-1]
            idx = min(bisect.bisect_right(self._cum_probs, u), len(self._cum_probs) - 1)
        lo, hi = self.mixture.input_tokens.low, self.mixture.input_tokens.high
        n_in = lo if lo == hi else int(rng.integers(lo, hi + 1))
        lo, hi = self.mixture.target_tokens.low, self.mixture.target_tokens.high
        n_tgt = lo if lo == hi else int(rng.integers(lo, hi + 1))
        plan, n = self._plan(idx, tuple(present)), len(present)
        inp = [0] * n
        side = plan.inputs
        if side.pos and n_in:
            if self.redistribute:
                # a sequence of T tokens never uses more than T inputs (each dropped run shrinks to one sentinel)
                # nor T + 2 targets (one sentinel per run, runs separated by kept units, plus the closing one):
                # capping there changes none of its masks but frees the rest of its share for the other keys
                cap = [tokens[j] for j in side.pos]
            else:  # ml-4m: sequences are capped at max_tokens whatever their length
                cap = [tokens[j] if t else m for j, t, m in zip(side.pos, side.token_like, side.max_tokens)]
            budget = self._allocate(rng, side.alphas, side.positive, cap, n_in, side.fallback)
            for j, b in zip(side.pos, budget, strict=True):
                inp[j] = b

        tgt = [0] * n
        side = plan.targets
        if side.pos and n_tgt:
            # token keys: targets only among the tokens that are not inputs (disjointness)
            if self.redistribute:
                cap = [
                    tokens[j] - inp[j] if t else min(tokens[j] + 2, m)
                    for j, t, m in zip(side.pos, side.token_like, side.max_tokens)
                ]
            else:
                cap = [tokens[j] - inp[j] if t else m for j, t, m in zip(side.pos, side.token_like, side.max_tokens)]
            budget = self._allocate(rng, side.alphas, side.positive, cap, n_tgt, side.fallback)
            for j, b in zip(side.pos, budget, strict=True):
                tgt[j] = b
        return idx, inp, tgt, n_in, n_tgt

    def budgets(
        self, sample: Mapping[str, SampleContent], rng: np.random.Generator
    ) -> tuple[int, dict[str, int], dict[str, int], int, int]:
        """Pick a strategy and draw ``(strategy, input budgets, target budgets, total input, total target)``.

        Only present, non-empty keys compete. The input budget is capped by what a key can hold (token count,
        embedding rows; a sequence's tokens, or ``max_tokens`` without redistribution as in ml-4m), the target
        budget of a token key by what inputs left over (disjointness), of a sequence by its length + 2. With
        ``redistribute`` the budget cut off by the caps goes to keys with room in proportion to their Dirichlet
        shares of the same draw (then, for shares that underflowed to 0, in proportion to the alphas); keys with
        alpha 0 never get any. So both budgets are used up whenever the keys with a positive alpha can hold them."""
        present, _, tokens, _ = self._scan(sample)
        idx, inp, tgt, n_in, n_tgt = self._draw(present, tokens, rng)
        keys = [self.keys[i] for i in present]
        return idx, dict(zip(keys, inp, strict=True)), dict(zip(keys, tgt, strict=True)), n_in, n_tgt

    # -- per key -------------------------------------------------------------------------------------------------
    @staticmethod
    def _token_masks_np(rng: np.random.Generator, n: int, n_in: int, n_tgt: int) -> tuple[np.ndarray, np.ndarray]:
        """Random ranks (a uniform permutation): rank < ``n_in`` is input, the next ``n_tgt`` ranks are targets.
        Keys without budget (most keys of a concentrated Dirichlet draw) or with everything as input need no
        draw."""
        if n_in + n_tgt == 0:
            return _mask(n, True), _mask(n, True)
        if n_in >= n:
            return _mask(n, False), _mask(n, True)
        rank = rng.permutation(n)
        # ranks below n_in wrap around to huge unsigned values: masked as targets too
        return rank >= n_in, (rank - n_in).view(np.uint64) >= n_tgt

    @staticmethod
    def token_masks(rng: np.random.Generator, n: int, n_in: int, n_tgt: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random permutation: ``n_in`` random positions are inputs, ``n_tgt`` others targets (disjoint)."""
        input_mask, target_mask = FourMMasker._token_masks_np(rng, n, n_in, n_tgt)
        return torch.from_numpy(input_mask), torch.from_numpy(target_mask)

    def _keep_prob(self, rng: np.random.Generator, scheme: KeepScheme) -> float:
        if scheme == KeepScheme.ALL:
            return 1.0
        if scheme == KeepScheme.BINARY:
            return float(rng.random() < 0.5)
        return rng.random()

    @staticmethod
    def _fitting_keep(
        rng: np.random.Generator, lens: np.ndarray | None, n_tokens: int, n_in: int, keep_prob: float
    ) -> np.ndarray:
        """ml-4m's loop: keep each unit with ``keep_prob``, redraw with the probability times 0.9 until the input
        (kept tokens + one sentinel per dropped run) fits ``n_in``; once the probability is at most 1e-6 the next
        trial keeps nothing (input ``[S_1]``, which fits any ``n_in >= 1``).

        The same law in fewer calls: when the input cannot overflow (``n_in`` >= tokens) the first draw is final;
        otherwise the trials up to a few past the one whose expected input length first fits are drawn at once
        (independent rows, each with its own probability) and the first fitting row is taken; the rows after it
        only consume generator state. Rarely a second block is needed."""
        n_units = n_tokens if lens is None else len(lens)
        if keep_prob <= 0.0 or n_units == 0:
            return _mask(n_units, False)
        if n_in >= n_tokens:
            return _mask(n_units, True) if keep_prob >= 1.0 else rng.random(n_units) < keep_prob
        if n_in == 1:  # only "everything dropped" (input [S_1]) fits: whichever trial it comes from, it is final
            return _mask(n_units, False)
        start, stop = 0, _expected_fit_trial(keep_prob, n_units, n_tokens, n_in) + 4
        while True:
            probs = keep_prob * _DECAY_POWERS[start:stop]
            if probs[-1] <= _KEEP_PROB_FLOOR:  # trial t > 0 keeps nothing once trial t - 1 was at the floor
                probs[1:][probs[:-1] <= _KEEP_PROB_FLOOR] = 0.0
                if start > 0 and keep_prob * _DECAY_POWERS[start - 1] <= _KEEP_PROB_FLOOR:
                    probs[0] = 0.0
            dropped = rng.random((len(probs), n_units)) >= probs[:, None]
            # input length = units - (dropped units that continue a run), for one-token units
            absorbed = np.count_nonzero(dropped[:, 1:] & dropped[:, :-1], axis=1)
            if lens is None:
                fits = np.flatnonzero(absorbed >= n_units - n_in)
            else:  # kept tokens + runs = tokens - dropped tokens + dropped units - absorbed
                size = n_tokens - dropped @ lens + np.count_nonzero(dropped, axis=1) - absorbed
                fits = np.flatnonzero(size <= n_in)
            if len(fits):
                return ~dropped[fits[0]]
            start, stop = stop, min(stop + 16, len(_DECAY_POWERS))
            if start >= len(_DECAY_POWERS):  # unreachable: a zero-probability trial always fits
                return _mask(n_units, False)

    def _sequence_np(
        self,
        rng: np.random.Generator,
        ids: np.ndarray,
        lens: np.ndarray | None,
        n_in: int,
        n_tgt: int,
        scheme: KeepScheme,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sequence_masks` on a flat id array (see :func:`_span_arrays`)."""
        if n_in == 0 and n_tgt == 0:
            return _EMPTY_IDS, _EMPTY_IDS
        if n_in == 0:  # no input budget: the input is empty, everything is target (ml-4m)
            keep = _mask(len(ids) if lens is None else len(lens), False)
        else:
            keep = self._fitting_keep(rng, lens, len(ids), n_in, self._keep_prob(rng, scheme))
        inp, tgt, starts, dropped = _spans(ids, lens, keep, self.sentinel_base, n_in > 0, n_tgt > 0)
        if len(tgt) > n_tgt:
            # _target_window from the run starts: run r's sentinel sits after the r earlier sentinels and the
            # dropped tokens before the run
            start = 0
            if len(starts) > 1:
                r = int(rng.random() * len(starts))
                start = r + int(np.count_nonzero(dropped[: starts[r]]))
                if len(tgt) - start < n_tgt:
                    start = 0  # the earliest sentinel, whose suffix (the whole target) fills the budget
            tgt = tgt[start : start + n_tgt]
        return inp, tgt

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
        ids, lens, _ = _chunk_ids(units, sum(len(u) for u in units))
        inp, tgt = self._sequence_np(rng, ids, lens, n_in, n_tgt, scheme)
        return inp.tolist(), tgt.tolist()

    def _target_window(self, rng: np.random.Generator, tgt: np.ndarray, n_tgt: int) -> np.ndarray:
        """ml-4m: a ``n_tgt`` window of the target starting at a random run sentinel (not the closing one); if
        that is too close to the end, at the earliest sentinel whose suffix fills the budget."""
        starts = np.flatnonzero((tgt - self.sentinel_base).view(np.uint64) < NUM_SENTINELS)[:-1]
        start = int(starts[int(rng.random() * len(starts))]) if len(starts) > 1 else int(starts[0])
        if len(tgt) - start < n_tgt:
            start = int(starts[np.flatnonzero(len(tgt) - starts >= n_tgt)[0]])
        return tgt[start : start + n_tgt]

    # -- entry points --------------------------------------------------------------------------------------------
    def __call__(
        self, sample: Mapping[str, SampleContent], rng: np.random.Generator | None = None
    ) -> dict[str, MaskedKey]:
        """Mask one sample. Absent or empty keys are left out of the result (callers fill them as all-masked)."""
        rng = self.rng if rng is None else rng
        present, length, tokens, units = self._scan(sample)
        idx, inp, tgt, _, _ = self._draw(present, tokens, rng)
        keep, token_like = self.keep[idx], self._token_like
        masked: list[MaskedKey | None] = [None] * len(present)
        # token keys with inputs or targets share one block of uniform keys (see _flat_token_masks)
        drawn: list[int] = []
        # token keys without budget (most keys of a concentrated draw): all-masked, cut from one allocation
        idle: list[int] = []
        for j, (i, n, n_in, n_tgt) in enumerate(zip(present, length, inp, tgt, strict=True)):
            if token_like[i]:
                if n_in + n_tgt == 0:
                    idle.append(j)
                elif n_in >= n:
                    masked[j] = MaskedKey(_mask(n, False), _mask(n, True), n_in, n_tgt)
                else:
                    drawn.append(j)
                continue
            ids, lens = units[i]
            i_ids, t_ids = self._sequence_np(rng, ids, lens, n_in, n_tgt, keep[i])
            masked[j] = MaskedKey(None, None, n_in, n_tgt, i_ids, t_ids)
        if drawn:
            d_in, d_tgt = [inp[j] for j in drawn], [tgt[j] for j in drawn]
            for j, a, b, input_mask, target_mask in zip(
                drawn, d_in, d_tgt, *_flat_token_masks(rng, [length[j] for j in drawn], d_in, d_tgt), strict=True
            ):
                masked[j] = MaskedKey(input_mask, target_mask, a, b)
        if idle:
            block = np.ones(2 * sum(length[j] for j in idle), dtype=bool)
            at = 0
            for j in idle:
                n = length[j]
                masked[j] = MaskedKey(block[at : at + n], block[at + n : at + 2 * n], 0, 0)
                at += 2 * n
        return {self.keys[i]: m for i, m in zip(present, masked, strict=True)}  # type: ignore[misc]

    def mask_batch(
        self,
        samples: Sequence[Mapping[str, SampleContent]],
        rngs: np.random.Generator | Sequence[int | np.random.Generator] | None = None,
    ) -> list[dict[str, MaskedKey]]:
        """Mask several samples: with one generator (default: the masker's own) shared in order, or with one seed
        or generator per sample (a seed ``s`` means ``default_rng(s)``, as the data pipeline draws per sample)."""
        if rngs is None or isinstance(rngs, np.random.Generator):
            rng = self.rng if rngs is None else rngs
            return [self(s, rng) for s in samples]
        if len(rngs) != len(samples):
            raise ValueError(f"{len(rngs)} seeds / generators for {len(samples)} samples")
        return [
            self(s, r if isinstance(r, np.random.Generator) else np.random.default_rng(r))
            for s, r in zip(samples, rngs, strict=True)
        ]


#: per width w up to _PAD_TABLE_MAX: row n is 0 on its first n columns and 2 (past every uniform key) after; the
#: padding of keys with sizes ``sizes`` is ``table[sizes]``, one gather (the sets of sizes vary too much per sample,
#: with embedding rows following caption lengths, for a cache per set of sizes to hit)
_PAD_TABLES: dict[int, np.ndarray] = {}
_PAD_TABLE_MAX = 1024


def _padding(sizes: list[int], width: int) -> np.ndarray:
    """(len(sizes), width) float32: 0 on row r's first ``sizes[r]`` columns, 2 after."""
    if width > _PAD_TABLE_MAX:
        return (np.arange(width)[None, :] >= np.array(sizes)[:, None]) * np.float32(2.0)
    table = _PAD_TABLES.get(width)
    if table is None:
        n = np.arange(width + 1)[:, None]
        table = _PAD_TABLES.setdefault(width, ((np.arange(width)[None, :] >= n) * 2.0).astype(np.float32))
    return table[sizes]


def _flat_token_masks(
    rng: np.random.Generator, sizes: list[int], n_in: list[int], n_tgt: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(input masks, target masks) of several token keys (sizes ``sizes``, ``0 < n_in + n_tgt``, ``n_in < size``):
    per key a uniform random ``n_in``-subset of its positions is input and a uniform random ``n_tgt``-subset of
    the rest is target, as ranks of a uniform permutation give.

    Drawn for all keys of a sample at once, in a fixed number of numpy calls whatever the sizes: one row of
    float32 uniform keys per key (half the generator work of doubles), padded to the longest with 2 (larger than
    any key, so never chosen), sorted row-wise
    (numpy sorts short rows several times faster than one flat array of the same size); a key's ``n_in``
    smallest keys are its inputs, the next ``n_tgt`` its targets, found by comparing with the thresholds read off
    the sorted rows. I.i.d. uniform keys rank positions by a uniform permutation: the same law as one
    ``rng.permutation`` per key, which this replaced, in a third of the numpy calls. A tie at a threshold (24-bit
    keys: probability ~1e-5 per key) would break the exact counts: then the masks are drawn again by permutation.
    Both ways the law is exact: "no tie at a threshold" is symmetric in the positions, so the subsets it leaves
    are still uniform.
    The masks are views of two (keys, longest) arrays."""
    rows, width = len(sizes), max(sizes)
    keys = rng.random((rows, width), dtype=np.float32)
    if min(sizes) < width:
        keys += _padding(sizes, width)
    srt = np.sort(keys, axis=1)
    # thresholds (and the next sorted key, to rule out ties) at ranks n_in and n_in + n_tgt of every row
    idx = [
        i
        for st, n, a, b in zip(range(0, rows * width, width), sizes, n_in, n_tgt, strict=True)
        for i in (st + a - 1, st + a, st + a + b - 1, st + min(a + b, n - 1))
    ]
    g = srt.take(idx).tolist()  # index -1 (first row, no input) reads a value that goes unused
    lo, hi = [], []
    for k, n, a, b in zip(range(0, 4 * rows, 4), sizes, n_in, n_tgt, strict=True):
        if a == 0:
            lo.append(-1.0)  # below every key
        elif g[k] < g[k + 1]:
            lo.append(g[k])
        else:  # tie at the input threshold
            return _permuted_token_masks(rng, sizes, n_in, n_tgt)
        if b == 0:
            hi.append(lo[-1])
        elif a + b == n:
            hi.append(1.5)  # above every key but the padding
        elif g[k + 2] < g[k + 3]:
            hi.append(g[k + 2])
        else:  # tie at the target threshold
            return _permuted_token_masks(rng, sizes, n_in, n_tgt)
    # float32 thresholds (exact: read off the float32 keys): comparing with float64 ones would convert the keys
    bounds = np.array((lo, hi), dtype=np.float32)[:, :, None]
    not_input = keys > bounds[0]
    # target: not input and within the first n_in + n_tgt keys; an input is always within, so xor masks both
    not_target = not_input ^ (keys <= bounds[1])
    return [not_input[r, :n] for r, n in enumerate(sizes)], [not_target[r, :n] for r, n in enumerate(sizes)]


def _permuted_token_masks(
    rng: np.random.Generator, sizes: list[int], n_in: list[int], n_tgt: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`_flat_token_masks` by one ``rng.permutation`` per key (the fallback on ties)."""
    out = [FourMMasker._token_masks_np(rng, n, a, b) for n, a, b in zip(sizes, n_in, n_tgt, strict=True)]
    return [o[0] for o in out], [o[1] for o in out]


def _expected_fit_trial(keep_prob: float, n_units: int, n_tokens: int, n_in: int) -> int:
    """First trial t whose keep probability ``keep_prob * 0.9^t`` gives an expected input length within ``n_in``
    (kept tokens ``T p`` plus runs ``(1 - p) + (U - 1) p (1 - p)``, solved for p); only sizes the first block."""
    u, t = n_units, n_tokens
    if u <= 1:
        p = (n_in - 1) / max(t - 1, 1)
    else:  # smaller root of (U - 1) p^2 - (T + U - 2) p + (n_in - 1) = 0
        b = t + u - 2
        p = (b - math.sqrt(max(b * b - 4 * (u - 1) * (n_in - 1), 0.0))) / (2 * (u - 1))
    if p >= keep_prob:
        return 0
    if p <= 0.0:
        return len(_DECAY_POWERS) - 1
    return min(math.ceil(math.log(p / keep_prob) / math.log(KEEP_PROB_DECAY)), len(_DECAY_POWERS) - 5)


def _span_ids(content: Sequence[int] | torch.Tensor | np.ndarray, max_tokens: int) -> np.ndarray:
    """A span key's ids as an int64 array, cut to ``max_tokens`` (as ml-4m)."""
    if isinstance(content, torch.Tensor):
        content = content.numpy()
    if isinstance(content, np.ndarray):
        if content.ndim == 1 and content.dtype == np.int64:
            return content[:max_tokens]
        return content.reshape(-1)[:max_tokens].astype(np.int64)
    return np.array(content[:max_tokens], dtype=np.int64).reshape(-1)


def _chunk_ids(chunks: Sequence[Sequence[int]], max_tokens: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(ids, chunk lengths, raw token count)`` of a chunk key: whole chunks while the cumulative length stays
    within ``max_tokens`` (ml-4m metadata handling), empty chunks left out (they carry nothing, and a dropped
    empty chunk would cost a sentinel for no token)."""
    lens = [len(c) for c in chunks]
    total = n = 0
    for length in lens:
        if total + length > max_tokens:
            break
        total += length
        n += 1
    kept, kept_lens = chunks[:n], lens[:n]
    if 0 in kept_lens:
        kept = [c for c in kept if len(c)]
        kept_lens = [x for x in kept_lens if x]
    try:
        ids = np.fromiter(chain.from_iterable(kept), dtype=np.int64, count=total)
    except (TypeError, ValueError):  # chunks of tensors or arrays
        ids = np.concatenate([np.asarray(c, dtype=np.int64).reshape(-1) for c in kept]) if kept else _EMPTY_IDS
    return ids, np.array(kept_lens, dtype=np.int64), sum(lens)


def chunk_boundaries_to_chunks(ids: Sequence[int], starts: Sequence[int]) -> list[list[int]]:
    """Split ``ids`` at ``starts`` (chunk start offsets, e.g. from ``registry.masking_chunks`` lengths)."""
    bounds = sorted(set(starts) | {0}) + [len(ids)]
    return [list(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
