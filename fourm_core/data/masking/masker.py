"""The 4M masking sampler, :class:`FourMMasker`: one sample's input and target masks, deterministic under a seed."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from fourm_core.keys import KeyInfo
from fourm_core.spec import MaskingUnit

from .budgets import MIN_ALPHA, _apportion, _Plan, _Side, _water_fill
from .config import KeepScheme, KeyAlphas, MaskingMixture
from .masked import MaskedKey, SampleContent
from .spans import (
    _DECAY_POWERS,
    _EMPTY_IDS,
    _KEEP_PROB_FLOOR,
    NUM_SENTINELS,
    PAD_ID,
    SENTINEL_BASE_ID,
    _chunk_ids,
    _expected_fit_trial,
    _mask,
    _span_ids,
    _spans,
)
from .tokens import _flat_token_masks, token_masks_np


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
        keys: Mapping[str, KeyInfo],
        mixture: MaskingMixture,
        *,
        seed: int | None = None,
        sentinel_base: int = SENTINEL_BASE_ID,
        pad_id: int = PAD_ID,
        redistribute: bool = True,
    ) -> None:
        self.infos = dict(keys)
        self.mixture = mixture
        self.keys = list(self.infos)
        infos = [self.infos[k] for k in self.keys]
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
        self.input_only = np.array([not info.target for info in infos], dtype=bool)
        self.target_only = np.array([not info.input for info in infos], dtype=bool)
        self.max_tokens = np.array([info.max_tokens for info in infos], dtype=np.int64)
        # plain-Python copies for the per-sample path
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._plan_cache: dict[tuple[int, tuple[int, ...]], _Plan] = {}
        self._max = self.max_tokens.tolist()
        # token keys and embedding rows: one mask entry per token / row; other keys are span or chunk sequences
        self._token_like = [info.masking == MaskingUnit.TOKEN or info.is_embedding for info in infos]
        self._chunked = [info.masking == MaskingUnit.CHUNK and not info.is_embedding for info in infos]
        self._input_ok = [not t for t in self.target_only.tolist()]
        # embedding rows are never targets (they have no vocabulary to predict)
        self._target_ok = [info.target and not info.is_embedding for info in infos]

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
            raise KeyError(f"sample has keys the masker does not know: {sorted(unknown)}")
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
    #: one permutation per key (kept as a method: the token masks' reference and tie fallback)
    _token_masks_np = staticmethod(token_masks_np)

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
