"""Fusing several generations of the same condition (ml-4m's "ensembling" of repeated samples).

Only discrete fusion is here: a majority vote per token position over N id tensors. Averaging the *decoded*
outputs (depth maps, normals, feature maps) is continuous fusion and needs each key's tokenizer decoder; it is out
of scope for this module (decode each generation and average the maps instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["ensemble"]


def ensemble(
    ids_list: Sequence[torch.Tensor] | Sequence[Mapping[str, torch.Tensor]], kind: str = "vote"
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Majority vote per position over N generations.

    ``ids_list``: N int tensors of one shape, or N ``{key: ids}`` dicts (as :meth:`GenerationSampler.generate`
    returns; fused per key). Ties go to the smallest id, so the result does not depend on the order of the
    generations. Sequences are voted position by position as well (they are not aligned first), which is only
    meaningful for sequences of equal structure.
    """
    if kind != "vote":
        raise NotImplementedError(f"ensemble kind {kind!r}: only 'vote' (continuous fusion is out of scope)")
    if not ids_list:
        raise ValueError("nothing to ensemble")
    first = ids_list[0]
    if isinstance(first, Mapping):
        keys = set(first)
        if any(set(d) != keys for d in ids_list):  # type: ignore[arg-type]
            raise ValueError("every generation must hold the same keys")
        return {k: _vote([d[k] for d in ids_list]) for k in first}  # type: ignore[index]
    return _vote(list(ids_list))  # type: ignore[arg-type]


def _vote(tensors: list[torch.Tensor]) -> torch.Tensor:
    stacked = torch.stack([t.long() for t in tensors])  # (N, ...)
    if stacked.numel() and int(stacked.min()) < 0:
        raise ValueError("ids must be non-negative")
    vocab = int(stacked.max()) + 1 if stacked.numel() else 1
    counts = torch.zeros((*stacked.shape[1:], vocab), dtype=torch.long, device=stacked.device)
    counts.scatter_add_(-1, stacked.movedim(0, -1), torch.ones_like(stacked.movedim(0, -1)))
    return counts.argmax(dim=-1)  # first maximum: the smallest id among tied counts
