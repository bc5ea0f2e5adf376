"""Fusing several generations of the same condition (ml-4m's "ensembling" of repeated samples).

Two fusions, as the paper's ensembling uses them: ``"vote"``, a majority vote per token position over N id tensors
(class-like outputs: token ids, or decoded class maps given as ids), and ``"mean"``, the per-element mean of N
decoded continuous outputs (depth maps, normals, feature maps, embeddings: decode each generation with the key's
tokenizer first, then fuse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["ensemble"]


def ensemble(
    ids_list: Sequence[torch.Tensor] | Sequence[Mapping[str, torch.Tensor]], kind: str = "vote"
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Fuse N generations: ``kind="vote"`` (majority per position) or ``"mean"`` (per-element mean).

    ``ids_list``: N tensors of one shape, or N ``{key: tensor}`` dicts (as :meth:`GenerationSampler.generate`
    returns; fused per key). Votes take int ids; ties go to the smallest id, so the result does not depend on the
    order of the generations. Sequences are voted position by position as well (they are not aligned first), which
    is only meaningful for sequences of equal structure. Means take floating (decoded) values; averaging token ids
    would mix unrelated codes, so int tensors are refused there.
    """
    fuse = {"vote": _vote, "mean": _mean}.get(kind)
    if fuse is None:
        raise ValueError(f"ensemble kind {kind!r}: use 'vote' (token ids, classes) or 'mean' (decoded continuous maps)")
    if not ids_list:
        raise ValueError("nothing to ensemble")
    first = ids_list[0]
    if isinstance(first, Mapping):
        keys = set(first)
        if any(set(d) != keys for d in ids_list):  # type: ignore[arg-type]
            raise ValueError("every generation must hold the same keys")
        return {k: fuse([d[k] for d in ids_list]) for k in first}  # type: ignore[index]
    return fuse(list(ids_list))  # type: ignore[arg-type]


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    values = [torch.as_tensor(t) for t in tensors]
    if not all(v.is_floating_point() for v in values):
        raise ValueError("'mean' fuses decoded continuous outputs; vote token ids with kind='vote'")
    return torch.stack([v.float() for v in values]).mean(dim=0)


def _vote(tensors: list[torch.Tensor]) -> torch.Tensor:
    stacked = torch.stack([t.long() for t in tensors])  # (N, ...)
    if stacked.numel() and int(stacked.min()) < 0:
        raise ValueError("ids must be non-negative")
    vocab = int(stacked.max()) + 1 if stacked.numel() else 1
    counts = torch.zeros((*stacked.shape[1:], vocab), dtype=torch.long, device=stacked.device)
    counts.scatter_add_(-1, stacked.movedim(0, -1), torch.ones_like(stacked.movedim(0, -1)))
    return counts.argmax(dim=-1)  # first maximum: the smallest id among tied counts
