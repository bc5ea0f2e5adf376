"""Token budgets: integer splits of a Dirichlet draw (largest remainders) and water-filling of what caps cut off.

Plain Python over the ~20 keys of a sample: for lists that short it is several times faster than numpy's per-call
overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import NamedTuple

import numpy as np

#: ml-4m clamps alphas to this minimum so a zero alpha is a valid (degenerate) Dirichlet parameter.
MIN_ALPHA = 1e-9


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
