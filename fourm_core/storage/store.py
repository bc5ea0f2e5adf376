"""The aligned multimodal store: one Zarr v3 group per dataset, written block by block, resumable.

Layout::

    root/                       attrs: format, n_samples, image_size, preset, block_size, manifest, source
      <part>/                   a "part" is one stored form of one thing: "source", "depth/raw", "depth/tokens" ...
        _state                  uint8 (N,): 0 to do, 1 done, 2 failed; one chunk per block
        <array>                 fixed-shape arrays: (N, *shape), one shard per block
        <array>.b<k>.values     ragged arrays (and json/text): per block k, values + offsets
        <array>.b<k>.offsets
        _errors.b<k>            per block, JSON {index: message} for failed samples (only when there are some)
        _blocks                 uint64 (n_blocks, 2): per block, a digest of what it stored and the files that
                                must exist (see :mod:`fourm_core.storage.integrity`); one chunk per block

Where: a local folder or any fsspec URL (``s3://bucket/x.zarr``, ``gs://``, ``memory://``; storage options from the
caller or ``FOURM_STORAGE_OPTIONS``, see :mod:`fourm_core.storage.location`). Local stores use Zarr's LocalStore;
URLs Zarr's FsspecStore.

Why blocks: concurrent writers must never share a shard (Zarr loses chunks written into one shard by two processes),
so every block of ``block_size`` samples has exactly one writer, which writes its arrays, then its record, and then,
last, its state chunk. A writer killed at any point leaves its block "to do"; the block is rewritten whole on resume,
so every sample ends up written exactly once with the same bytes as an uninterrupted run. ``--shard I/N`` gives each
of N processes (or machines) disjoint blocks, so shards never contend for a block lock; they share only the root
lock (the part table) and, when two runs overlap, a block lock makes the second claimant skip a written block.

What "written" rests on, locally: Zarr's LocalStore writes each file to a temporary name and renames it, so a file
is old or new, never half-written; POSIX locks (:mod:`fourm_core.storage.locks`) die with their process.

On an object store (S3, GCS) there is no rename, but every Zarr chunk or shard write is one PUT of a whole object,
which a reader sees entirely or not at all, and S3 and GCS give strong read-after-write consistency (a reader that
starts after a PUT returns sees it; listings too). So "arrays, then record, then state chunk last" keeps its meaning:
a state chunk that says done is only ever PUT after the block's arrays and record PUTs returned, so a reader that
sees it done sees them. A writer killed between PUTs (kill -9, a lost machine) leaves the block "to do", exactly as
locally; its lock is a lease object that expires (``FOURM_LEASE_SECONDS``) and is broken by the next claimant. The
root attributes (``zarr.json``) are one object, read-modify-written under the root lease. What an object store does
not give: listings cached by a client (fourm turns fsspec's listing cache off for URLs) and atomic multi-object
updates (none are needed: each step above is one object).

Why records: Zarr reads a missing file as zeros, so a lost shard must be caught by us. Readers check that the files
a block's record names exist; ``verify`` recomputes the digest and marks a damaged block (or a state chunk holding
a byte that is not pending/done/failed) to redo, so the command that wrote the part rewrites it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from fourm_core.spec import ArraySpec
from fourm_core.storage.checks import BlockChecks
from fourm_core.storage.integrity import (
    DONE,
    FAILED,
    PENDING,
    RECORD,
    SCHEME,
    UNREADABLE,
    BlockDamagedError,
    StoreError,
    StoreMismatchError,
    chunk_file,
    digest,
    mask,
    stored_keys,
)
from fourm_core.storage.layout import ArrayLayout, LayoutError, compressor, decode, encode, resolve
from fourm_core.storage.location import StoreLocation, as_location
from fourm_core.storage.locks import root_lock

__all__ = ["AlignedStore", "BlockDamagedError", "FAILED", "DONE", "StoreError", "StoreMismatchError", "PENDING"]

FORMAT = "fourm-aligned-store/1"
#: Target size of one inner chunk of a fixed array: small enough for random access, large enough to compress.
CHUNK_BYTES = 256 * 1024


class AlignedStore(BlockChecks):
    """Open or create with :meth:`create` / :meth:`open`; parts are declared with :meth:`ensure`."""

    def __init__(self, root: zarr.Group, location: StoreLocation) -> None:
        self.root = root
        #: where the store lives (picklable: worker processes reopen the store from it)
        self.location = location
        #: the store's path or URL, as messages show it
        self.url = location.display()
        attrs = root.attrs.asdict()
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{self.url} is not a fourm store (format {attrs.get('format')!r}, expected {FORMAT!r})")
        self.n_samples: int = attrs["n_samples"]
        self.image_size: int = attrs["image_size"]
        self.preset: str = attrs["preset"]
        self.block_size: int = attrs["block_size"]
        self._layouts: dict[str, dict[str, ArrayLayout]] = {}
        #: read-only handles see the store as it was when opened: array handles and per-part states are read once
        #: (each zarr lookup costs about half a millisecond, which capped training reads at ~1,200 samples/s)
        self.snapshot = False
        self._handles: dict[str, Any] = {}
        self._states: dict[str, np.ndarray] = {}

    @property
    def path(self) -> Path:
        """The folder of a local store (a store on an object store has none: use :attr:`url` / :attr:`location`)."""
        if self.location.local is None:
            raise StoreError(f"{self.url} is not a local folder; this operation needs a store on local disk")
        return self.location.local

    def _open_root(self, mode: str) -> zarr.Group:
        target, options = self.location.zarr_target()
        return zarr.open_group(target, mode=mode, zarr_format=3, storage_options=options)

    # -----------------------------------------------------------------------------------------------------------
    # creation and opening
    # -----------------------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path | StoreLocation,
        n_samples: int,
        image_size: int,
        preset: str,
        block_size: int = 64,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> AlignedStore:
        """A new empty store at a path or fsspec URL (``storage_options``: see
        :mod:`fourm_core.storage.location`); ``block_size`` (a power of two) is the unit of work and of sharding."""
        if block_size < 1 or block_size & (block_size - 1):
            raise StoreError(f"block_size must be a power of two, got {block_size}")
        if n_samples < 1:
            raise StoreError(f"a store needs at least one sample, got {n_samples}")
        location = as_location(path, storage_options)
        if location.occupied() and not overwrite:
            raise StoreError(f"{location.display()} already exists; open it to resume, or pass overwrite=True")
        target, options = location.zarr_target()
        root = zarr.open_group(target, mode="w", zarr_format=3, storage_options=options)
        root.attrs.update(
            {
                "format": FORMAT,
                "n_samples": n_samples,
                "image_size": image_size,
                "preset": preset,
                "block_size": block_size,
                **(attrs or {}),
            }
        )
        return cls(root, location)

    @classmethod
    def open(
        cls,
        path: str | Path | StoreLocation,
        mode: str = "r+",
        expected_manifest: Any | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> AlignedStore:
        """Open a store by path or fsspec URL; with ``expected_manifest`` (a VocabularyManifest) refuse one built
        with other plugins."""
        location = as_location(path, storage_options)
        if not location.exists():
            raise StoreError(f"no store at {location.display()}")
        target, options = location.zarr_target()
        try:
            group = zarr.open_group(target, mode=mode, zarr_format=3, storage_options=options)
        except Exception as exc:  # no zarr.json, or a damaged one
            raise StoreError(f"{location.display()} is not a fourm store ({type(exc).__name__}: {exc})") from None
        store = cls(group, location)
        store.snapshot = mode == "r"
        if expected_manifest is not None:
            store.check_manifest(expected_manifest)
        return store

    def check_manifest(self, expected: Any) -> None:
        """Raise :class:`StoreMismatchError` listing every difference between the stored and expected manifests."""
        from fourm_core.vocab import VocabularyManifest

        stored = self.root.attrs.get("manifest")
        if stored is None:
            return
        differences = VocabularyManifest.model_validate(stored).diff(
            expected, here="the store", there="the installed plugins"
        )
        if differences:
            raise StoreMismatchError(
                f"{self.url} was built with different plugins or vocabulary: " + "; ".join(differences)
            )

    def set_manifest(self, manifest: Any) -> None:
        """Record the vocabulary manifest (ids, vocabularies, plugin versions) in the root attrs."""
        self.update_attrs({"manifest": json.loads(manifest.model_dump_json())})

    def update_attrs(self, values: dict[str, Any]) -> None:
        """Set root attributes under the root lock, on freshly read attributes (no other process's update is lost)."""
        with root_lock(self.location):
            self._refresh()
            self.root.attrs.update(values)

    def _refresh(self) -> None:
        """Re-read the root group (its attributes are cached when opened)."""
        self.root = self._open_root("r+")

    # -----------------------------------------------------------------------------------------------------------
    # parts
    # -----------------------------------------------------------------------------------------------------------

    @property
    def n_blocks(self) -> int:
        """Number of blocks (the last may be short)."""
        return -(-self.n_samples // self.block_size)

    def block_range(self, block: int) -> range:
        """Sample indices of ``block``."""
        start = block * self.block_size
        return range(start, min(start + self.block_size, self.n_samples))

    def parts(self) -> list[str]:
        """Every declared part, e.g. ``["source", "depth/raw"]``."""
        return sorted(self.root.attrs.get("parts", {}))

    def ensure(
        self,
        part: str,
        arrays: Sequence[ArraySpec],
        dims: dict[str, int] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Declare ``part`` with its arrays, creating what is missing. Re-declaring with another layout or another
        labeler configuration is an error (relabel into a new part or delete it), so resumes never mix outputs."""
        try:
            layouts = {a.name: resolve(a, self.image_size, dims) for a in arrays}
        except LayoutError as exc:
            raise StoreError(f"part {part!r}: {exc}") from None
        described = {n: layout.describe() for n, layout in layouts.items()}
        with root_lock(self.location):
            self._refresh()
            self._ensure(part, layouts, described, provenance)

    def _ensure(
        self, part: str, layouts: dict[str, ArrayLayout], described: dict[str, Any], provenance: dict[str, Any] | None
    ) -> None:
        """:meth:`ensure` under the root lock, on freshly read attributes (another process may have added parts)."""
        parts = dict(self.root.attrs.get("parts", {}))
        if part in parts:
            old = parts[part]
            if old["layout"] != described:
                raise StoreError(f"part {part!r} exists with another layout: {old['layout']} != {described}")
            old_cfg = (old.get("provenance") or {}).get("config_hash")
            new_cfg = (provenance or {}).get("config_hash")
            if old_cfg and new_cfg and old_cfg != new_cfg:
                raise StoreError(
                    f"part {part!r} was written by another configuration ({old['provenance']}); "
                    f"refusing to mix outputs; delete the part to relabel"
                )
            self._layouts[part] = layouts
            return
        group = self.root.require_group(part)
        b = self.block_size
        # overwrite: a part missing from the table is a leftover of an interrupted declaration, nothing of it counts
        group.create_array(
            "_state",
            shape=(self.n_samples,),
            chunks=(b,),
            dtype="uint8",
            fill_value=PENDING,
            compressors=None,
            overwrite=True,
        )
        group.create_array(
            RECORD,
            shape=(self.n_blocks, 2),
            chunks=(1, 2),
            dtype="uint64",
            fill_value=0,
            compressors=None,
            overwrite=True,
        )
        for name, layout in layouts.items():
            if layout.ragged:
                continue  # created per block by the writer
            rows = max(1, min(b, CHUNK_BYTES // max(layout.sample_bytes, 1)))
            rows = 1 << (rows.bit_length() - 1)  # a power of two, so it divides the shard
            group.create_array(
                name,
                shape=(self.n_samples, *layout.shape),
                chunks=(rows, *layout.shape),
                shards=(b, *layout.shape),
                dtype=layout.dtype,
                fill_value=0,
                compressors=compressor(),
                overwrite=True,
            )
        parts[part] = {"layout": described, "provenance": provenance or {}, "integrity": SCHEME}
        self.root.attrs["parts"] = parts
        self._layouts[part] = layouts

    def layouts(self, part: str) -> dict[str, ArrayLayout]:
        """Concrete layouts of a part's arrays."""
        if part not in self._layouts:
            parts = self.root.attrs.get("parts", {})
            if part not in parts:
                raise StoreError(f"{self.url} has no part {part!r}; parts: {', '.join(sorted(parts)) or 'none'}")
            self._layouts[part] = {
                n: ArrayLayout(n, np.dtype(d["dtype"]), tuple(d["shape"]), d["ragged"], d["kind"])
                for n, d in parts[part]["layout"].items()
            }
        return self._layouts[part]

    def provenance(self, part: str) -> dict[str, Any]:
        """What wrote ``part`` (labeler name, version, config hash, weights)."""
        self.layouts(part)
        return dict(self.root.attrs["parts"][part].get("provenance", {}))

    # -----------------------------------------------------------------------------------------------------------
    # state
    # -----------------------------------------------------------------------------------------------------------

    def _array(self, key: str) -> Any:
        """The zarr array at ``key`` (handles cached on read-only stores)."""
        if not self.snapshot:
            return self.root[key]
        if key not in self._handles:
            self._handles[key] = self.root[key]
        return self._handles[key]

    def _has(self, key: str) -> bool:
        return key in self._handles or key in self.root

    def state(self, part: str) -> np.ndarray:
        """Per-sample state of ``part``: 0 to do, 1 done, 2 failed (255: the chunk is unreadable; any other value
        is a damaged chunk, reported by :meth:`verify` and redone by the writers)."""
        self.layouts(part)
        if self.snapshot and part in self._states:
            return self._states[part]
        state = self._robust_read(f"{part}/_state", self.n_samples, UNREADABLE)
        if self.snapshot:
            self._states[part] = state
        return state

    def block_state(self, part: str, block: int) -> np.ndarray:
        """State of one block (an unreadable chunk reads as :data:`UNREADABLE`, i.e. not done)."""
        r = self.block_range(block)
        try:
            if self.snapshot:
                return self.state(part)[r.start : r.stop]
            return np.asarray(self.root[f"{part}/_state"][r.start : r.stop])
        except Exception:
            return np.full(len(r), UNREADABLE, np.uint8)

    def todo_blocks(self, part: str) -> list[int]:
        """Blocks with at least one sample not done or failed (resume skips the others; damaged state is redone)."""
        state = self.state(part)
        written = (state == DONE) | (state == FAILED)
        return [
            k for k in range(self.n_blocks) if not written[self.block_range(k).start : self.block_range(k).stop].all()
        ]

    # -----------------------------------------------------------------------------------------------------------
    # writing and reading
    # -----------------------------------------------------------------------------------------------------------

    def write_block(
        self, part: str, block: int, values: Sequence[dict[str, Any] | None], errors: dict[int, str] | None = None
    ) -> None:
        """Write every sample of ``block`` (``None`` for a failed one, with its message in ``errors``), then its
        record, then mark the block's samples done or failed. Called by the block's only writer."""
        layouts = self.layouts(part)
        r = self.block_range(block)
        if len(values) != len(r):
            raise StoreError(f"block {block} of {part!r} has {len(r)} samples, got {len(values)} values")
        group = self.root[part]
        errors = dict(errors or {})
        encoded: dict[str, list[np.ndarray | None]] = {name: [] for name in layouts}
        for offset, value in enumerate(values):
            index = r.start + offset
            if value is None:
                errors.setdefault(index, "failed without a message")
                for name in layouts:
                    encoded[name].append(None)
                continue
            try:
                missing = sorted(set(layouts) - set(value))
                if missing:
                    raise StoreError(f"sample {index} of {part!r}: missing arrays {missing}")
                row = {
                    n: encode(layout, value[n], f"sample {index} of {part!r}, array {n!r}")
                    for n, layout in layouts.items()
                }
            except (StoreError, LayoutError) as exc:
                errors[index] = str(exc)
                row = dict.fromkeys(layouts)
            for name in layouts:
                encoded[name].append(row[name])
        pieces: dict[str, np.ndarray] = {}
        for name, layout in layouts.items():
            rows = encoded[name]
            if layout.ragged:
                empty = np.zeros((0, *layout.shape), layout.dtype)
                parts = [x if x is not None else empty for x in rows]
                offsets = np.zeros(len(parts) + 1, np.int64)
                offsets[1:] = np.cumsum([len(x) for x in parts])
                data = np.concatenate(parts) if parts else empty
                for suffix, array in (("values", data), ("offsets", offsets)):
                    group.create_array(
                        f"{name}.b{block}.{suffix}",
                        shape=array.shape,
                        chunks=array.shape if array.size else (1, *array.shape[1:]),
                        dtype=array.dtype,
                        compressors=compressor(),
                        overwrite=True,
                    )[...] = array
                    pieces[f"{name}.{suffix}"] = array
            else:
                slab = np.zeros((len(r), *layout.shape), layout.dtype)
                for i, x in enumerate(rows):
                    if x is not None:
                        slab[i] = x
                # the block is rewritten whole: drop its old shard first, which Zarr would otherwise read (and fail
                # on, when it is damaged) to merge into
                self.location.remove(chunk_file(part, name, len(layout.shape) + 1, block, False), missing_ok=True)
                group[name][r.start : r.stop] = slab
                pieces[name] = slab
        blob = b""
        if errors:
            blob = json.dumps({str(k): v for k, v in sorted(errors.items())}).encode()
            array = np.frombuffer(blob, np.uint8)
            group.create_array(f"_errors.b{block}", shape=array.shape, dtype="uint8", overwrite=True)[...] = array
        elif f"_errors.b{block}" in group:
            del group[f"_errors.b{block}"]  # messages of an earlier, failed write of this block
        if self.has_records(part):
            ordered = [(label, pieces[label]) for _, label in stored_keys(layouts, block)]
            group[RECORD][block] = np.array([digest(ordered, blob), mask(ordered)], np.uint64)
        state = np.array([FAILED if r.start + i in errors else DONE for i in range(len(r))], np.uint8)
        group["_state"][r.start : r.stop] = state  # last: the block counts as written only now

    def read_block(self, part: str, block: int, check: str = "exists") -> list[dict[str, Any] | None]:
        """Every sample of a block (``None`` where not done), reading each array once. ``check``: "exists" (the
        files the block's record names exist), "digest" (also recompute its digest) or "none"; a damaged block
        raises :class:`BlockDamagedError` instead of reading back as zeros."""
        layouts = self.layouts(part)
        r = self.block_range(block)
        state = self.block_state(part, block)
        if not ((state == DONE) | (state == FAILED)).any():
            return [None] * len(r)
        if check != "none":
            self.check_exists(part, block)
        raw: dict[str, np.ndarray] = {}
        for key, label in stored_keys(layouts, block):
            if label in layouts:
                raw[label] = np.asarray(self._array(f"{part}/{key}")[r.start : r.stop])
            elif self._has(f"{part}/{key}"):
                raw[label] = np.asarray(self._array(f"{part}/{key}")[:])
        if check == "digest":
            self._check_digest(part, block, raw)
        columns: dict[str, list[Any]] = {}
        for name, layout in layouts.items():
            if not layout.ragged:
                columns[name] = list(raw[name])
            elif f"{name}.offsets" not in raw:
                columns[name] = [None] * len(r)
            else:
                offsets, data = raw[f"{name}.offsets"], raw[f"{name}.values"]
                columns[name] = [
                    decode(layout, data[offsets[i] : offsets[i + 1]]) if state[i] == DONE else None
                    for i in range(len(r))
                ]
        return [{n: columns[n][i] for n in layouts} if state[i] == DONE else None for i in range(len(r))]

    def read(self, part: str, index: int) -> dict[str, Any]:
        """One sample of ``part``; an error names the part and sample when it is not written or damaged."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"sample {index} outside 0..{self.n_samples - 1}")
        block, offset = divmod(index, self.block_size)
        layouts = self.layouts(part)
        group = self.root[part]
        state = int(group["_state"][index])
        if state != DONE:
            why = self.errors(part).get(index, "not written yet") if state == FAILED else "not written yet"
            raise StoreError(f"sample {index} of {part!r} is unavailable: {why}")
        self.check_exists(part, block)
        out: dict[str, Any] = {}
        for name, layout in layouts.items():
            if layout.ragged:
                offsets = np.asarray(group[f"{name}.b{block}.offsets"][offset : offset + 2])
                values = np.asarray(group[f"{name}.b{block}.values"][offsets[0] : offsets[1]])
                out[name] = decode(layout, values)
            else:
                out[name] = np.asarray(group[name][index])
        return out
