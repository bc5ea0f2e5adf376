"""The aligned multimodal store: one Zarr v3 group per dataset, written block by block, resumable.

Layout::

    root/                       attrs: format, n_samples, image_size, preset, block_size, manifest, source
      <part>/                   a "part" is one stored form of one thing: "source", "depth/raw", "depth/tokens" ...
        _state                  uint8 (N,): 0 to do, 1 done, 2 failed; one chunk per block
        <array>                 fixed-shape arrays: (N, *shape), one shard per block
        <array>.b<k>.values     ragged arrays (and json/text): per block k, values + offsets
        <array>.b<k>.offsets
        _errors.b<k>            per block, JSON {index: message} for failed samples (only when there are some)

Why blocks: concurrent writers must never share a shard (Zarr loses chunks written into one shard by two processes),
so every block of ``block_size`` samples has exactly one writer, which writes its arrays and then, last, its state
chunk. A writer killed at any point leaves its block "to do"; the block is rewritten whole on resume, so every sample
ends up written exactly once with the same bytes as an uninterrupted run. File writes are atomic in Zarr's LocalStore.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from fourm_core.spec import ArraySpec
from fourm_core.storage.layout import ArrayLayout, LayoutError, resolve

__all__ = ["AlignedStore", "FAILED", "DONE", "StoreError", "StoreMismatchError", "PENDING"]

FORMAT = "fourm-aligned-store/1"
PENDING, DONE, FAILED = 0, 1, 2
#: Target size of one inner chunk of a fixed array: small enough for random access, large enough to compress.
CHUNK_BYTES = 256 * 1024


class StoreError(RuntimeError):
    """The store cannot do what was asked (unknown part, layout clash, bad value); the message says which."""


class StoreMismatchError(StoreError):
    """The store was built with other plugins, vocabulary or preset than the ones installed now."""


def _compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def _encode(layout: ArrayLayout, value: Any, where: str) -> np.ndarray:
    """One sample's value as the array that is stored (json/text as UTF-8 bytes), checked against the layout."""
    if layout.kind == "json":
        return np.frombuffer(json.dumps(value, separators=(",", ":"), allow_nan=False).encode(), np.uint8)
    if layout.kind == "text":
        if not isinstance(value, str):
            raise StoreError(f"{where}: expected text, got {type(value).__name__}")
        return np.frombuffer(value.encode("utf-8"), np.uint8)
    array = np.asarray(value)
    expected = ("N", *layout.shape) if layout.ragged else layout.shape
    shape_ok = array.shape[1:] == layout.shape if layout.ragged else array.shape == layout.shape
    if not shape_ok or (layout.ragged and array.ndim != len(layout.shape) + 1):
        raise StoreError(f"{where}: expected shape {expected}, got {array.shape}")
    if not np.can_cast(array.dtype, layout.dtype, casting="same_kind"):
        raise StoreError(f"{where}: expected dtype {layout.dtype}, got {array.dtype}")
    return array.astype(layout.dtype, copy=False)


def _decode(layout: ArrayLayout, stored: np.ndarray) -> Any:
    if layout.kind == "json":
        return json.loads(stored.tobytes().decode("utf-8"))
    if layout.kind == "text":
        return stored.tobytes().decode("utf-8")
    return stored


class AlignedStore:
    """Open or create with :meth:`create` / :meth:`open`; parts are declared with :meth:`ensure`."""

    def __init__(self, root: zarr.Group, path: Path) -> None:
        self.root = root
        self.path = path
        attrs = root.attrs.asdict()
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{path} is not a fourm store (format {attrs.get('format')!r}, expected {FORMAT!r})")
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

    # -----------------------------------------------------------------------------------------------------------
    # creation and opening
    # -----------------------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        n_samples: int,
        image_size: int,
        preset: str,
        block_size: int = 64,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> AlignedStore:
        """A new empty store; ``block_size`` (a power of two) is the unit of work and of sharding."""
        if block_size < 1 or block_size & (block_size - 1):
            raise StoreError(f"block_size must be a power of two, got {block_size}")
        if n_samples < 1:
            raise StoreError(f"a store needs at least one sample, got {n_samples}")
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists; open it to resume, or pass overwrite=True")
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
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
        return cls(root, path)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r+", expected_manifest: Any | None = None) -> AlignedStore:
        """Open a store; with ``expected_manifest`` (a VocabularyManifest) refuse one built with other plugins."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"no store at {path}")
        store = cls(zarr.open_group(str(path), mode=mode, zarr_format=3), path)
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
                f"{self.path} was built with different plugins or vocabulary:\n"
                + "\n".join(f"  - {d}" for d in differences)
            )

    def set_manifest(self, manifest: Any) -> None:
        """Record the vocabulary manifest (ids, vocabularies, plugin versions) in the root attrs."""
        self.root.attrs["manifest"] = json.loads(manifest.model_dump_json())

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
        group.create_array(
            "_state", shape=(self.n_samples,), chunks=(b,), dtype="uint8", fill_value=PENDING, compressors=None
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
                compressors=_compressor(),
            )
        parts[part] = {"layout": described, "provenance": provenance or {}}
        self.root.attrs["parts"] = parts
        self._layouts[part] = layouts

    def layouts(self, part: str) -> dict[str, ArrayLayout]:
        """Concrete layouts of a part's arrays."""
        if part not in self._layouts:
            parts = self.root.attrs.get("parts", {})
            if part not in parts:
                raise StoreError(f"{self.path} has no part {part!r}; parts: {', '.join(sorted(parts)) or 'none'}")
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
        """Per-sample state of ``part``: 0 to do, 1 done, 2 failed."""
        self.layouts(part)
        if self.snapshot:
            if part not in self._states:
                self._states[part] = np.asarray(self._array(f"{part}/_state")[:])
            return self._states[part]
        return np.asarray(self.root[f"{part}/_state"][:])

    def block_state(self, part: str, block: int) -> np.ndarray:
        """State of one block (a torn or missing chunk reads as 'to do')."""
        r = self.block_range(block)
        try:
            if self.snapshot:
                return self.state(part)[r.start : r.stop]
            return np.asarray(self.root[f"{part}/_state"][r.start : r.stop])
        except Exception:
            return np.zeros(len(r), np.uint8)

    def todo_blocks(self, part: str) -> list[int]:
        """Blocks with at least one sample still to do (resume skips the others)."""
        state = self.state(part)
        return [
            k
            for k in range(self.n_blocks)
            if (state[self.block_range(k).start : self.block_range(k).stop] == PENDING).any()
        ]

    def errors(self, part: str) -> dict[int, str]:
        """Messages of failed samples, by sample index."""
        out: dict[int, str] = {}
        group = self.root[part]
        for k in range(self.n_blocks):
            name = f"_errors.b{k}"
            if name in group:
                out.update({int(i): m for i, m in json.loads(np.asarray(group[name][:]).tobytes()).items()})
        return out

    # -----------------------------------------------------------------------------------------------------------
    # writing and reading
    # -----------------------------------------------------------------------------------------------------------

    def write_block(
        self, part: str, block: int, values: Sequence[dict[str, Any] | None], errors: dict[int, str] | None = None
    ) -> None:
        """Write every sample of ``block`` (``None`` for a failed one, with its message in ``errors``), then mark
        the block's samples done or failed. Called by the block's only writer."""
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
                    n: _encode(layout, value[n], f"sample {index} of {part!r}, array {n!r}")
                    for n, layout in layouts.items()
                }
            except StoreError as exc:
                errors[index] = str(exc)
                row = dict.fromkeys(layouts)
            for name in layouts:
                encoded[name].append(row[name])
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
                        compressors=_compressor(),
                        overwrite=True,
                    )[...] = array
            else:
                slab = np.zeros((len(r), *layout.shape), layout.dtype)
                for i, x in enumerate(rows):
                    if x is not None:
                        slab[i] = x
                group[name][r.start : r.stop] = slab
        if errors:
            blob = np.frombuffer(json.dumps({str(k): v for k, v in sorted(errors.items())}).encode(), np.uint8)
            group.create_array(f"_errors.b{block}", shape=blob.shape, dtype="uint8", overwrite=True)[...] = blob
        state = np.array([FAILED if r.start + i in errors else DONE for i in range(len(r))], np.uint8)
        group["_state"][r.start : r.stop] = state  # last: the block counts as written only now

    def read_block(self, part: str, block: int) -> list[dict[str, Any] | None]:
        """Every sample of a block (``None`` where not done), reading each array once."""
        layouts = self.layouts(part)
        r = self.block_range(block)
        state = self.block_state(part, block)
        if not (state == DONE).any():
            return [None] * len(r)
        columns: dict[str, list[Any]] = {}
        for name, layout in layouts.items():
            if layout.ragged:
                key = f"{part}/{name}.b{block}"
                if not self._has(f"{key}.offsets"):
                    columns[name] = [None] * len(r)
                    continue
                offsets = np.asarray(self._array(f"{key}.offsets")[:])
                data = np.asarray(self._array(f"{key}.values")[:])
                columns[name] = [
                    _decode(layout, data[offsets[i] : offsets[i + 1]]) if state[i] == DONE else None
                    for i in range(len(r))
                ]
            else:
                slab = np.asarray(self._array(f"{part}/{name}")[r.start : r.stop])
                columns[name] = list(slab)
        return [{n: columns[n][i] for n in layouts} if state[i] == DONE else None for i in range(len(r))]

    def read(self, part: str, index: int) -> dict[str, Any]:
        """One sample of ``part``; an error names the part and sample when it is not written."""
        if not 0 <= index < self.n_samples:
            raise IndexError(f"sample {index} outside 0..{self.n_samples - 1}")
        block, offset = divmod(index, self.block_size)
        layouts = self.layouts(part)
        group = self.root[part]
        state = int(group["_state"][index])
        if state != DONE:
            why = self.errors(part).get(index, "not written yet") if state == FAILED else "not written yet"
            raise StoreError(f"sample {index} of {part!r} is unavailable: {why}")
        out: dict[str, Any] = {}
        for name, layout in layouts.items():
            if layout.ragged:
                offsets = np.asarray(group[f"{name}.b{block}.offsets"][offset : offset + 2])
                values = np.asarray(group[f"{name}.b{block}.values"][offsets[0] : offsets[1]])
                out[name] = _decode(layout, values)
            else:
                out[name] = np.asarray(group[name][index])
        return out

    # -----------------------------------------------------------------------------------------------------------
    # inspection
    # -----------------------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Sizes, completeness and provenance of every part (``fourm data info``)."""
        parts = {}
        for part in self.parts():
            state = self.state(part)
            size = sum(f.stat().st_size for f in (self.path / part).rglob("*") if f.is_file())
            parts[part] = {
                "done": int((state == DONE).sum()),
                "failed": int((state == FAILED).sum()),
                "todo": int((state == PENDING).sum()),
                "complete": bool((state != PENDING).all()),
                "bytes": size,
                "arrays": {n: layout.describe() for n, layout in self.layouts(part).items()},
                "provenance": self.provenance(part),
            }
        return {
            "path": str(self.path),
            "n_samples": self.n_samples,
            "image_size": self.image_size,
            "preset": self.preset,
            "block_size": self.block_size,
            "parts": parts,
        }

    def verify(self, parts: Iterable[str] | None = None) -> list[str]:
        """Check every written sample against its layout; report holes, failures, NaNs and unreadable blocks."""
        problems: list[str] = []
        for part in parts or self.parts():
            state = self.state(part)
            todo = np.flatnonzero(state == PENDING)
            if len(todo):
                problems.append(f"{part}: {len(todo)} samples not written (first: {todo[:5].tolist()})")
            for index, message in sorted(self.errors(part).items()):
                problems.append(f"{part}: sample {index} failed: {message}")
            for block in range(self.n_blocks):
                if not (self.block_state(part, block) == DONE).any():
                    continue
                try:
                    rows = self.read_block(part, block)
                except Exception as exc:
                    problems.append(f"{part}: block {block} unreadable: {exc!r}")
                    continue
                for i, row in zip(self.block_range(block), rows):
                    if row is None:
                        continue
                    for name, value in row.items():
                        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                            problems.append(f"{part}: sample {i} array {name!r} has NaN or inf")
        return problems
