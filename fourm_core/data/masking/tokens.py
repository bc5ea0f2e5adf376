"""Token masks: which grid / global / embedding positions are inputs and which are targets, drawn for all token
keys of a sample at once (:func:`_flat_token_masks`) or one permutation per key (:func:`token_masks_np`)."""

from __future__ import annotations

import numpy as np

from .spans import _mask


def token_masks_np(rng: np.random.Generator, n: int, n_in: int, n_tgt: int) -> tuple[np.ndarray, np.ndarray]:
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
    out = [token_masks_np(rng, n, a, b) for n, a, b in zip(sizes, n_in, n_tgt, strict=True)]
    return [o[0] for o in out], [o[1] for o in out]
