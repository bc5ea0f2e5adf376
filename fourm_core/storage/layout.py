"""From a plugin's storage schema (``ArraySpec``) to concrete Zarr array layouts.

Symbols in a schema are resolved here: ``H``/``W`` become the store's image size, other symbols come from the
labeler (``dims``, e.g. a teacher's feature width ``C``). Ragged arrays (first dimension varies per sample, and all
``json``/``text`` arrays) are stored per block as a values + offsets pair, because each block has exactly one writer;
fixed arrays are one Zarr array with one shard per block, for the same reason (two writers inside one shard lose
chunks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec

from fourm_core.spec import ArraySpec

__all__ = ["ArrayLayout", "LayoutError", "compressor", "decode", "encode", "resolve"]

_ENCODED = {"json": np.dtype("uint8"), "text": np.dtype("uint8")}


class LayoutError(ValueError):
    """A schema cannot be turned into a concrete layout (an unresolved dimension, a bad dtype)."""


@dataclass(frozen=True)
class ArrayLayout:
    """A concrete per-sample layout: ``shape`` of one sample (ragged: without the variable first dimension)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    ragged: bool
    kind: str  # "array", "json" or "text"

    @property
    def sample_bytes(self) -> int:
        """Bytes of one fixed-shape sample (one row of a ragged array)."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def describe(self) -> dict[str, object]:
        """JSON-ready form stored in the modality group's attrs."""
        return {"dtype": str(self.dtype), "shape": list(self.shape), "ragged": self.ragged, "kind": self.kind}


def resolve(spec: ArraySpec, image_size: int, dims: dict[str, int] | None = None) -> ArrayLayout:
    """Concrete layout of ``spec`` in a store of ``image_size`` pixels, with symbolic sizes taken from ``dims``."""
    dims = {"H": image_size, "W": image_size, **(dims or {})}
    if spec.dtype in _ENCODED:
        return ArrayLayout(spec.name, _ENCODED[spec.dtype], (), True, spec.dtype)
    shape = spec.shape[1:] if spec.ragged else spec.shape
    concrete = []
    for d in shape:
        if isinstance(d, int):
            concrete.append(d)
        elif d in dims:
            concrete.append(int(dims[d]))
        else:
            raise LayoutError(
                f"array {spec.name!r}: dimension {d!r} is not known; the labeler must give it in dims "
                f"(known: {sorted(dims)})"
            )
    return ArrayLayout(spec.name, np.dtype(spec.dtype), tuple(concrete), spec.ragged, "array")


def compressor() -> BloscCodec:
    """The codec of every data array: zstd with bit shuffling packs depth maps and token ids well and decodes fast."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def encode(layout: ArrayLayout, value: Any, where: str) -> np.ndarray:
    """One sample's value as the array that is stored (json/text as UTF-8 bytes), checked against the layout."""
    if layout.kind == "json":
        return np.frombuffer(json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), np.uint8)
    if layout.kind == "text":
        if not isinstance(value, str):
            raise LayoutError(f"{where}: expected text, got {type(value).__name__}")
        return np.frombuffer(value.encode("utf-8"), np.uint8)
    array = np.asarray(value)
    expected = ("N", *layout.shape) if layout.ragged else layout.shape
    shape_ok = array.shape[1:] == layout.shape if layout.ragged else array.shape == layout.shape
    if not shape_ok or (layout.ragged and array.ndim != len(layout.shape) + 1):
        raise LayoutError(f"{where}: expected shape {expected}, got {array.shape}")
    if not np.can_cast(array.dtype, layout.dtype, casting="same_kind"):
        raise LayoutError(f"{where}: expected dtype {layout.dtype}, got {array.dtype}")
    return array.astype(layout.dtype, copy=False)


def decode(layout: ArrayLayout, stored: np.ndarray) -> Any:
    """The value :func:`encode` stored (json/text back from UTF-8 bytes; arrays as they are)."""
    if layout.kind == "json":
        return json.loads(stored.tobytes().decode("utf-8"))
    if layout.kind == "text":
        return stored.tobytes().decode("utf-8")
    return stored
