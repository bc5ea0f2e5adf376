"""The masker's per-key result, :class:`MaskedKey`: numpy inside (cheap to build), torch tensors on access."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .spans import _mask

#: One sample's content per model key: a token count (token / embedding keys), a 1-D id sequence (span keys,
#: EOS already appended) or a list of chunks of ids (chunk keys).
SampleContent = int | Sequence[int] | torch.Tensor | Sequence[Sequence[int]]

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
