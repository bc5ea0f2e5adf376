"""Labelers many plugins reuse, configured by the plugin (they never name a modality themselves)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fourm_core.labeling.api import LabelContext, LabelError, SampleView
from fourm_core.spec import ModalitySpec

__all__ = [
    "CopyArray",
    "FromModality",
    "SourceCopy",
    "as_float32",
    "copy_array",
    "copy_source",
]

#: Storage dtypes a copied source field is converted to (json and text values are stored as the source gives them).
_NUMERIC = {"uint8", "int16", "int32", "int64", "float16", "float32", "bool"}


class SourceCopy:
    """Copies ground truth a source provides (the synthetic world renders depth, normals, boxes ... exactly).

    ``fields`` maps each storage array to a source field; ``convert`` optionally post-processes the field values
    (e.g. ``np.float32`` or a JSON clean-up). Missing fields raise :class:`LabelError` naming them.
    """

    version = "1"

    def __init__(
        self,
        fields: Mapping[str, str],
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
        allow_empty: bool = True,
    ) -> None:
        self.fields = dict(fields)
        self.convert = dict(convert or {})
        self.allow_empty = allow_empty

    def label(self, sample: SampleView) -> dict[str, Any]:
        out = {}
        for array, field in self.fields.items():
            value = sample.truth(field)
            if value is None or (not self.allow_empty and isinstance(value, str) and not value.strip()):
                raise LabelError(f"sample {sample.index}: the source's {field!r} is empty")
            out[array] = self.convert[array](value) if array in self.convert else value
        return out

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "source ground truth", "fields": self.fields}


class FromModality:
    """Computes arrays from another modality's stored arrays with a plain function (edges from an instance map)."""

    version = "1"

    def __init__(self, modality: str, fn: Callable[[Mapping[str, Any]], dict[str, Any]], description: str) -> None:
        self.modality = modality
        self.fn = fn
        self.description = description

    def label(self, sample: SampleView) -> dict[str, Any]:
        return self.fn(sample.get(self.modality))

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": self.description, "from": self.modality}


def as_float32(value: Any) -> np.ndarray:
    """Source arrays as float32 (what depth/normal storage expects)."""
    return np.asarray(value, dtype=np.float32)


class CopyArray(FromModality):
    """Copies one fixed-width vector another modality stored (a teacher's CLS embedding for a global modality)."""

    def __init__(self, modality: str, array: str, target: str, width: int) -> None:
        super().__init__(modality, self._copy, f"copy of {modality}.{array}")
        self.array, self.target, self.width = array, target, width

    def _copy(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        value = arrays.get(self.array)
        if value is None:
            raise LabelError(f"{self.modality!r} has no {self.array!r} array for this sample")
        vector = np.asarray(value, dtype=np.float32)
        if vector.shape != (self.width,):
            raise LabelError(f"{self.modality}.{self.array} has shape {vector.shape}, expected ({self.width},)")
        return {self.target: vector.copy()}

    def dims(self) -> dict[str, int]:
        return {"C": self.width}

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "array": self.array, "feature_dim": self.width}


# ----------------------------------------------------------------------------------------------------------------
# Generic labeler factories: a plugin names one in a LabelerEntry and configures it through ``options``.
# ----------------------------------------------------------------------------------------------------------------


def copy_source(
    spec: ModalitySpec, context: LabelContext, fields: Mapping[str, str], allow_empty: bool = True
) -> SourceCopy:
    """Ground truth the source provides, each storage array from the source field ``fields`` names, converted to the
    array's declared dtype (so a plugin states the dtype once, in its spec)."""
    dtypes = {a.name: a.dtype for a in spec.storage}
    unknown = sorted(set(fields) - set(dtypes))
    if unknown:
        raise ValueError(f"modality {spec.name!r} stores no arrays {unknown} (it has {sorted(dtypes)})")
    convert: dict[str, Callable[[Any], Any]] = {}
    for array in fields:
        if dtypes[array] in _NUMERIC:
            convert[array] = lambda value, dtype=dtypes[array]: np.asarray(value, dtype=dtype)
    return SourceCopy(fields, convert=convert, allow_empty=allow_empty)


def copy_array(spec: ModalitySpec, context: LabelContext, modality: str, array: str, target: str) -> CopyArray:
    """A copy of another modality's stored vector (a teacher's CLS embedding); its width is the width the spec's
    tokenizer takes (``tokenizer.input_channels``)."""
    width = spec.tokenizer.input_channels if spec.tokenizer and spec.tokenizer.input_channels else None
    if width is None:
        raise ValueError(f"modality {spec.name!r}: the tokenizer config must give input_channels (the vector width)")
    return CopyArray(modality, array, target, width)
