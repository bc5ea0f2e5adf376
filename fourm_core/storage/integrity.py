"""What makes a store's blocks trustworthy: a per-block record (digest + files that must exist).

Why a record: Zarr reads a missing chunk or shard as its fill value, so a deleted file of a done block reads back as
64 depth maps of zeros (or captions of NUL bytes, token rows of 0) and nothing notices. Every block write therefore
ends, just before its state chunk, by writing one row of the part's ``_blocks`` array: a 64-bit BLAKE2b digest of
everything the block stored (the bytes of every array, then its error messages) and a bit mask of the array files
that must exist (Zarr writes no file for an all-zero chunk, so "must exist" is only known at write time). Readers
check existence with a few ``stat`` calls (cheap); ``verify`` and ``tokenize`` recompute the digest. Each row is its
own chunk, written only by the block's one writer, like the state chunk.

Where files are checked: every key is relative to the store and checked through its
:class:`~fourm_core.storage.location.StoreLocation` (a ``stat`` locally, a ``HEAD`` or a listing on an object store).
Locks live in :mod:`fourm_core.storage.locks`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from fourm_core.storage.layout import ArrayLayout

__all__ = [
    "BlockDamagedError",
    "DONE",
    "FAILED",
    "PENDING",
    "RECORD",
    "SCHEME",
    "StoreError",
    "StoreMismatchError",
    "UNREADABLE",
    "chunk_file",
    "digest",
    "must_exist",
    "state_problem",
    "stored_keys",
]

PENDING, DONE, FAILED = 0, 1, 2
#: what :meth:`AlignedStore.state` shows for a state chunk that cannot be read (any value but 0/1/2 is damage)
UNREADABLE = 255


class StoreError(RuntimeError):
    """The store cannot do what was asked (unknown part, layout clash, bad value); the message says which."""


class StoreMismatchError(StoreError):
    """The store was built with other plugins, vocabulary or preset than the ones installed now."""


class BlockDamagedError(StoreError):
    """A written block lost a file or changed since it was written; the message names part, block and samples."""

    def __init__(self, part: str, block: int, samples: range, reason: str) -> None:
        super().__init__(f"{part}: block {block} (samples {samples.start}..{samples.stop - 1}): {reason}")
        self.part, self.block, self.samples, self.reason = part, block, samples, reason


def state_problem(state: np.ndarray) -> str | None:
    """Why a block's state bytes are damaged (None when each is pending, done or failed)."""
    bad = state[(state != PENDING) & (state != DONE) & (state != FAILED)]
    if not bad.size:
        return None
    if (bad == UNREADABLE).all():
        return "its state chunk is unreadable"
    return f"its state chunk holds bytes that are not pending/done/failed: {sorted(set(bad.tolist()))[:5]}"


#: the per-part array of block records: (n_blocks, 2) uint64 rows ``[digest, must-exist mask]``; 0 = no record
RECORD = "_blocks"
#: recorded in the part table, so parts written before records existed are recognised (and not flagged)
SCHEME = "blake2b-64/1"


def stored_keys(layouts: Mapping[str, ArrayLayout], block: int) -> list[tuple[str, str]]:
    """``(array key within the part, block-independent label)`` of everything one block stores, in digest order."""
    keys: list[tuple[str, str]] = []
    for name in sorted(layouts):
        if layouts[name].ragged:
            keys += [(f"{name}.b{block}.{s}", f"{name}.{s}") for s in ("values", "offsets")]
        else:
            keys.append((name, name))
    return keys


def digest(pieces: Sequence[tuple[str, np.ndarray]], errors: bytes) -> int:
    """Digest of one block's stored arrays (label, dtype, shape and bytes of each) and its error messages; never 0,
    which means "no record"."""
    h = hashlib.blake2b(digest_size=8)
    for label, array in pieces:
        h.update(f"{label}|{array.dtype.str}|{array.shape}|".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(b"errors|" + errors)
    return int.from_bytes(h.digest(), "little") or 1


def mask(pieces: Sequence[tuple[str, np.ndarray]]) -> int:
    """Bit ``i`` set when piece ``i`` holds a non-zero byte, so Zarr wrote a file for it (first 64 pieces)."""
    return sum(1 << i for i, (_, a) in enumerate(pieces[:64]) if a.size and np.any(a.view(np.uint8)))


def chunk_file(part: str, key: str, ndim: int, block: int, ragged: bool) -> str:
    """The store-relative key of the file Zarr writes for ``key``'s data of ``block``: the block's shard of a fixed
    array, or the single chunk of a per-block ragged array (Zarr 3's default ``c/<i>/<j>...`` chunk keys)."""
    index = [0] * ndim if ragged else [block] + [0] * (ndim - 1)
    return "/".join([part, key, "c", *map(str, index)])


def must_exist(part: str, layouts: Mapping[str, ArrayLayout], block: int, record_mask: int) -> list[tuple[str, str]]:
    """``(key, store-relative file)`` of every file the block's record says was written (and the metadata of its
    per-block ragged arrays, which is written even when their data is empty)."""
    out = []
    for i, (key, label) in enumerate(stored_keys(layouts, block)):
        layout = layouts[label.rsplit(".", 1)[0] if label.endswith((".values", ".offsets")) else label]
        if layout.ragged:
            out.append((key, f"{part}/{key}/zarr.json"))
        if i < 64 and record_mask >> i & 1:
            ndim = 1 if label.endswith(".offsets") else len(layout.shape) + 1
            out.append((key, chunk_file(part, key, ndim, block, layout.ragged)))
    return out
