"""What the store does to know its blocks are whole: records, existence and digest checks, repair, ``verify`` and
``info`` (a mixin of :class:`~fourm_core.storage.store.AlignedStore`, kept apart so each module stays readable).

A block counts as written when its state chunk says so, but a file can be lost or changed afterwards and Zarr would
read it back as zeros. Readers therefore check the files the block's record names (cheap); ``verify`` and the
commands that read a whole part before deriving another (``tokenize``) recompute the digest. A damaged block is
marked to redo (pending), so the command that wrote the part rewrites exactly that block.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from fourm_core.storage.integrity import (
    DONE,
    FAILED,
    PENDING,
    RECORD,
    SCHEME,
    BlockDamagedError,
    digest,
    must_exist,
    state_problem,
    stored_keys,
)
from fourm_core.storage.locks import block_lock

if TYPE_CHECKING:
    import zarr

    from fourm_core.storage.layout import ArrayLayout
    from fourm_core.storage.location import StoreLocation

__all__ = ["BlockChecks"]


class BlockChecks:
    """Integrity checks and repair of an :class:`AlignedStore` (see the module docstring)."""

    location: StoreLocation
    url: str
    root: zarr.Group
    snapshot: bool
    n_samples: int
    block_size: int
    _states: dict[str, np.ndarray]

    if TYPE_CHECKING:  # provided by AlignedStore

        @property
        def n_blocks(self) -> int: ...

        def block_range(self, block: int) -> range: ...
        def layouts(self, part: str) -> dict[str, ArrayLayout]: ...
        def parts(self) -> list[str]: ...
        def state(self, part: str) -> np.ndarray: ...
        def block_state(self, part: str, block: int) -> np.ndarray: ...
        def provenance(self, part: str) -> dict[str, Any]: ...
        def read_block(self, part: str, block: int, check: str = "exists") -> list[dict[str, Any] | None]: ...
        def _array(self, key: str) -> Any: ...
        def _has(self, key: str) -> bool: ...

    # -----------------------------------------------------------------------------------------------------------
    # reads that survive damage
    # -----------------------------------------------------------------------------------------------------------

    def _robust_read(self, key: str, rows: int, fill: int) -> np.ndarray:
        """Array ``key`` whole, or block by block when a chunk is unreadable (its rows then read as ``fill``)."""
        array = self._array(key)
        try:
            return np.asarray(array[:])
        except Exception:
            out = np.full(array.shape, fill, array.dtype)
            per = -(-self.block_size * rows // self.n_samples) if rows != self.n_samples else self.block_size
            for start in range(0, rows, per):
                try:
                    out[start : start + per] = array[start : start + per]
                except Exception:
                    pass
            return out

    def errors(self, part: str) -> dict[int, str]:
        """Messages of failed samples, by sample index (an unreadable message blob is skipped: verify reports it)."""
        out: dict[int, str] = {}
        group = self.root[part]
        for k in range(self.n_blocks):
            name = f"_errors.b{k}"
            if name in group:
                try:
                    out.update({int(i): m for i, m in json.loads(np.asarray(group[name][:]).tobytes()).items()})
                except Exception:
                    continue
        return out

    # -----------------------------------------------------------------------------------------------------------
    # records
    # -----------------------------------------------------------------------------------------------------------

    def has_records(self, part: str) -> bool:
        """Whether ``part`` keeps block records (parts written before records existed do not)."""
        self.layouts(part)
        return bool(self.root.attrs["parts"][part].get("integrity") == SCHEME)

    def record(self, part: str, block: int) -> tuple[int, int] | None:
        """``(digest, must-exist mask)`` of a block, ``(0, 0)`` when missing, None when the part keeps none."""
        if not self.has_records(part):
            return None
        key = f"{part}/{RECORD}"
        if self.snapshot:
            if key not in self._states:
                self._states[key] = self._robust_read(key, self.n_blocks, 0)
            row = self._states[key][block]
        else:
            try:
                row = np.asarray(self.root[key][block])
            except Exception:
                return 0, 0
        return int(row[0]), int(row[1])

    def check_exists(self, part: str, block: int) -> None:
        """Raise :class:`BlockDamagedError` when a written block's record is missing or names a missing file (a few
        ``stat`` calls, or object ``HEAD``s / listings on an object store: what every reader does)."""
        record = self.record(part, block)
        if record is None:
            return
        r = self.block_range(block)
        if record[0] == 0:
            raise BlockDamagedError(part, block, r, "its integrity record is missing")
        files = must_exist(part, self.layouts(part), block, record[1])
        found = self.location.exists_many([file for _, file in files])
        for key, file in files:
            if not found[file]:
                raise BlockDamagedError(part, block, r, f"array {key!r} lost its file {file}")

    def _check_digest(self, part: str, block: int, raw: dict[str, np.ndarray]) -> None:
        """Compare what a block reads back (``raw``: its arrays by label) with the digest written with it."""
        record = self.record(part, block)
        if record is None:
            return
        r = self.block_range(block)
        name = f"{part}/_errors.b{block}"
        blob = np.asarray(self._array(name)[:]).tobytes() if self._has(name) else b""
        try:
            ordered = [(label, raw[label]) for _, label in stored_keys(self.layouts(part), block)]
        except KeyError as exc:
            raise BlockDamagedError(part, block, r, f"array {exc.args[0]!r} is missing") from None
        if digest(ordered, blob) != record[0]:
            raise BlockDamagedError(part, block, r, "its contents differ from what was written (digest mismatch)")

    # -----------------------------------------------------------------------------------------------------------
    # claims and repair
    # -----------------------------------------------------------------------------------------------------------

    @contextmanager
    def claim(self, part: str, block: int) -> Iterator[bool]:
        """Hold the lock of one block while working on it; yields whether it still has work (another process may
        have written it meanwhile), so two runs on one store never write one block at the same time."""
        with block_lock(self.location, part, block):
            state = self.block_state(part, block)
            yield not ((state == DONE) | (state == FAILED)).all()

    def mark_pending(self, part: str, block: int) -> None:
        """Mark a (damaged) block to redo: its state back to pending, its record cleared."""
        r = self.block_range(block)
        with block_lock(self.location, part, block):
            group = self.root[part]
            group["_state"][r.start : r.stop] = np.zeros(len(r), np.uint8)
            if self.has_records(part):
                group[RECORD][block] = np.zeros(2, np.uint64)
        self._states.pop(part, None)
        self._states.pop(f"{part}/{RECORD}", None)

    def check_blocks(self, part: str, deep: bool = False) -> list[BlockDamagedError]:
        """Damaged blocks of ``part``: state bytes that are not pending/done/failed, and written blocks whose record
        is missing or names a missing file (with ``deep``: whose contents no longer match their digest)."""
        state = self.state(part)
        damaged = []
        for k in range(self.n_blocks):
            r = self.block_range(k)
            why = state_problem(state[r.start : r.stop])
            if why is not None:
                damaged.append(BlockDamagedError(part, k, r, why))
                continue
            if (state[r.start : r.stop] == PENDING).all():
                continue
            try:
                if deep:
                    self.read_block(part, k, check="digest")
                else:
                    self.check_exists(part, k)
            except BlockDamagedError as exc:
                damaged.append(exc)
            except Exception as exc:  # a chunk Zarr cannot decode
                damaged.append(BlockDamagedError(part, k, r, f"unreadable ({type(exc).__name__}: {exc})"))
        return damaged

    def repair(self, part: str, deep: bool = False) -> list[BlockDamagedError]:
        """Find damaged blocks of ``part`` (see :meth:`check_blocks`) and mark them to redo; returns them."""
        damaged = self.check_blocks(part, deep)
        for d in damaged:
            self.mark_pending(part, d.block)
        return damaged

    # -----------------------------------------------------------------------------------------------------------
    # inspection
    # -----------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Sizes, completeness, damage (cheap check) and provenance of every part (``fourm data info``)."""
        parts = {}
        for part in self.parts():
            state = self.state(part)
            damaged = self.check_blocks(part)
            size = self.location.size(part)
            parts[part] = {
                "done": int((state == DONE).sum()),
                "failed": int((state == FAILED).sum()),
                "todo": int((state == PENDING).sum()),
                "damaged": [str(d) for d in damaged],
                "complete": bool(((state == DONE) | (state == FAILED)).all()) and not damaged,
                "bytes": size,
                "arrays": {n: layout.describe() for n, layout in self.layouts(part).items()},
                "provenance": self.provenance(part),
            }
        attrs = self.root.attrs
        return {
            "path": self.url,
            "n_samples": self.n_samples,
            "image_size": attrs["image_size"],
            "preset": attrs["preset"],
            "block_size": attrs["block_size"],
            "parts": parts,
        }

    def verify(self, parts: Iterable[str] | None = None, repair: bool = False) -> list[str]:
        """Check every written block against its record and layout; report holes, failures, NaNs and damaged
        blocks by part, block and sample range (with ``repair``, damaged blocks are marked to redo)."""
        problems: list[str] = []
        for part in parts or self.parts():
            for damaged in self.check_blocks(part, deep=True):
                if repair:
                    self.mark_pending(part, damaged.block)
                problems.append(f"{damaged}" + ("; marked to redo" if repair else ""))
            state = self.state(part)
            todo = np.flatnonzero(state == PENDING)
            if len(todo):
                problems.append(f"{part}: {len(todo)} samples not written (first: {todo[:5].tolist()})")
            for index, message in sorted(self.errors(part).items()):
                problems.append(f"{part}: sample {index} failed: {message}")
            for block in range(self.n_blocks):
                if not (self.block_state(part, block) == DONE).any():
                    continue
                for i, row in zip(self.block_range(block), self.read_block(part, block, check="none")):
                    for name, value in (row or {}).items():
                        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                            problems.append(f"{part}: sample {i} array {name!r} has NaN or inf")
        return problems
