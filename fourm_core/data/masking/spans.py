"""Span masking of sequences (ml-4m's T5-style sentinels) and the id helpers around it.

:func:`span_mask` is the readable reference; the masker runs the vectorised :func:`_spans`, which tests compare to it.
:func:`merge_spans` inverts the masking (generation uses it to splice predicted spans back in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch

#: Official 4M-21 text vocabulary ids (see ``fourm_core.vocab``): ``[PAD]`` 0, ``[EOS]`` 3, ``[S_k]`` = 4 + k.
PAD_ID = 0
EOS_ID = 3
SENTINEL_BASE_ID = 4
NUM_SENTINELS = 200
#: ml-4m shrinks the keep probability by this factor until the masked input fits its budget.
KEEP_PROB_DECAY = 0.9


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
