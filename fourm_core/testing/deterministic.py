"""Weights both sides of a compatibility test can rebuild bit for bit, so fixtures hold outputs, not weights.

A reference fixture made with ml-4m's own classes (``tools/ml4m_fixtures/``) records, for each state-dict entry,
its shape and the SHA-256 of the float32 bytes this module generates for it; the fourm test regenerates the same
tensors, checks the digests (so a change in the generator fails loudly instead of comparing different models),
writes them in the hub layout and loads them through fourm's public loaders. A 4M-21 state dict at even 8 channels
is tens of megabytes (six 30k text vocabularies); its recipe is a few kilobytes.

Values come from NumPy's PCG64 ``Generator.random`` in float32 (a bit-level recipe NumPy keeps stable across
releases), seeded from the tensor's name, mapped to ``[-scale, scale]``. Every tensor gets non-zero, non-constant
values: output layers that ml-4m starts at zero would otherwise hide bugs.

This module imports only NumPy and hashlib, so the side environment that runs ml-4m loads it by file path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["digest", "tensor_values", "recipe_state"]

#: the default half-width of the uniform values
DEFAULT_SCALE = 0.05


def _seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def tensor_values(name: str, shape: Sequence[int], seed: int = 0, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """The float32 array for state-dict entry ``name`` of ``shape``: uniform in ``[-scale, scale]``, seeded by
    ``(seed, name)``."""
    rng = np.random.Generator(np.random.PCG64(_seed(name, seed)))
    n = int(np.prod(shape)) if len(shape) else 1
    values = rng.random(n, dtype=np.float32) * np.float32(2 * scale) - np.float32(scale)
    return values.reshape(tuple(int(s) for s in shape)).astype(np.float32)


def digest(array: np.ndarray) -> str:
    """SHA-256 of the C-contiguous float32 bytes of ``array``."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def recipe_state(
    shapes: Mapping[str, Sequence[int]],
    seed: int = 0,
    scale: Callable[[str], float] | float = DEFAULT_SCALE,
) -> dict[str, np.ndarray]:
    """Arrays for every entry of ``shapes`` (name -> shape); ``scale`` a number or a function of the name."""
    pick = scale if callable(scale) else (lambda _name: float(scale))
    return {name: tensor_values(name, shape, seed, pick(name)) for name, shape in shapes.items()}
