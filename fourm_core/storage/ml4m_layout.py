"""ml-4m's data layout, both ways: a store to per-modality webdataset tar shards, and such shards into a store.

ml-4m (``README_DATA.md``) keeps one folder per modality, each a numbered series of tar shards::

    root/<folder>/shard-00000.tar       members <key>.<ext>, the same keys in the same order in every folder

Which folder and file form a store part gets is read from the registered specs, never from a table of names here:

- a ``pixels`` modality (one ``(H, W, 3)`` uint8 raw array) goes to the folder named by its key stem (ml-4m reads
  ``rgb@224`` from ``rgb/``), as lossless ``.png`` (``.jpg`` and ``.png`` are read back);
- a ``sequence`` modality with one raw array goes to the folder named by its model key, as ``.txt`` (text) or
  ``.json`` (JSON: the value the store holds, as it holds it, or as ml-4m holds it when the plugin declares a
  converter, ``OfficialAssets.file_form``: det's boxes become ml-4m's ``{"instances": [...]}``);
- a modality's pre-computed tokens (``<modality>/tokens``, ``(K, L)`` int16) go to the folder named by its model key
  (``tok_depth@224``) as ``.npy`` of shape ``(n_crops, L)``, ml-4m's pre-tokenised form, and the store's crop settings
  (``crops`` part, ``(K, 5)`` rows ``[top, left, height, width, flip]``) to ``crop_settings/`` as ``.npy``.

Anything else (raw dense labels of token modalities, several raw arrays, per-item tokens, members of a group sharing
one ml-4m folder) has no file form here yet and is listed as skipped. Import writes the parts directly (a
:class:`~fourm_core.sources.protocol.Source` only fills the ``source`` part, and pre-computed tokens have no labeler
to copy them from there), with provenance ``ml4m_import`` naming the folder.

Python's :mod:`tarfile` reads and writes the shards: the format is plain tar and the ``webdataset`` package would add
a dependency (and its automatic decoders, which unpickle ``.pyd`` members) for nothing; ``.npy`` is loaded with
``allow_pickle=False`` and JSON with :mod:`json`, so a shard can never run code. A shard with a missing key, keys out
of the reference order, or a member that does not decode is one :class:`Ml4mLayoutError` naming the tar and member.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fourm_core.errors import FileFormatError
from fourm_core.storage.store import DONE, AlignedStore, StoreError

__all__ = ["CROP_FOLDER", "Folder", "Ml4mLayoutError", "Ml4mReport", "export_ml4m", "folders_for", "import_ml4m"]

#: ml-4m's folder of pre-tokenisation crops (``save_vq_tokens.py``); not a modality
CROP_FOLDER = "crop_settings"
#: the store part and array the pre-tokeniser writes crops to (:data:`fourm_core.tokenizers.pretokenize.CROPS_PART`,
#: restated so that this module imports no torch)
CROPS_PART, CROPS_ARRAY = "crops", "settings"
IMPORT_LABELER = "ml4m_import"
_READ_EXTS = {"png": ("png", "jpg", "jpeg"), "txt": ("txt", "json"), "json": ("json",), "npy": ("npy",)}


class Ml4mLayoutError(FileFormatError):
    """A folder, shard or member of an ml-4m layout that cannot be read or written as expected."""


@dataclass(frozen=True)
class Folder:
    """One ml-4m folder and the store part/array it holds."""

    folder: str
    modality: str | None  # None: the crop settings
    part: str
    array: str
    ext: str  # written form: png, txt, json, npy
    #: the plugin's converter between the stored value and ml-4m's file (``OfficialAssets.file_form``), if any
    form: str | None = None


@dataclass
class Ml4mReport:
    """What an export or import did: folders written or read, samples, shards and skipped things (with why)."""

    folders: list[Folder] = field(default_factory=list)
    samples: int = 0
    shards: int = 0
    skipped: list[str] = field(default_factory=list)


def _single_raw(spec: Any) -> Any | None:
    raw = [a for a in spec.storage if a.form == "raw"]
    return raw[0] if len(raw) == 1 else None


def folders_for(registry: Any, preset: str) -> tuple[list[Folder], list[str]]:
    """Every folder the registered modalities can be written to or read from in ``preset``, and why the others
    cannot; decided by each spec's kind, key and storage arrays."""
    found: list[Folder] = []
    notes: list[str] = []
    for modality in registry.modalities():
        spec, name = modality.spec, modality.name
        if spec.group is not None and len(modality.group_members()) > 1:
            notes.append(f"{name}: shares ml-4m's folder {modality.model_key(preset)!r} with its group (not yet)")
            continue
        raw = _single_raw(spec)
        kind = spec.kind.value
        if kind == "pixels" and raw is not None and raw.dtype == "uint8" and len(raw.shape) == 3:
            found.append(Folder(spec.key, name, f"{name}/raw", raw.name, "png"))
        elif kind == "sequence" and raw is not None and raw.dtype in ("text", "json"):
            form = spec.official.file_form if spec.official is not None else None
            ext = "json" if form is not None else raw.dtype.replace("text", "txt")
            found.append(Folder(modality.model_key(preset), name, f"{name}/raw", raw.name, ext, form))
        tokens = [a for a in spec.storage if a.form == "tokens"]
        if len(tokens) == 1 and not tokens[0].ragged and kind != "sequence":
            found.append(Folder(modality.model_key(preset), name, f"{name}/tokens", tokens[0].name, "npy"))
    seen: dict[str, Folder] = {}
    for f in found:
        if f.folder in seen:
            notes.append(f"{f.part}: folder {f.folder!r} is already {seen[f.folder].part}'s")
        else:
            seen[f.folder] = f
    return [*seen.values(), Folder(CROP_FOLDER, None, CROPS_PART, CROPS_ARRAY, "npy")], notes


# ---------------------------------------------------------------------------------------------------------------
# member encoding
# ---------------------------------------------------------------------------------------------------------------


def _encode(value: Any, ext: str) -> bytes:
    buf = io.BytesIO()
    if ext == "png":
        from PIL import Image

        Image.fromarray(np.asarray(value, np.uint8)).save(buf, format="png")
    elif ext == "npy":
        np.save(buf, np.asarray(value), allow_pickle=False)
    elif ext == "txt":
        buf.write(str(value).encode())
    else:
        buf.write(json.dumps(value, ensure_ascii=False).encode())
    return buf.getvalue()


def _decode(data: bytes, ext: str, wanted: Folder) -> Any:
    if ext in ("png", "jpg", "jpeg"):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    text = data.decode("utf-8")
    if ext == "txt":
        return text
    value = json.loads(text)
    if wanted.ext == "txt":  # ml-4m's text may be JSON: a string, or a list of one-string objects, the first kept
        value = value[0] if isinstance(value, list) and value else value
        strings = [v for v in value.values() if isinstance(v, str)] if isinstance(value, dict) else [value]
        if len(strings) != 1 or not isinstance(strings[0], str):
            raise ValueError("expected a string, or a list of objects holding one string each")
        value = strings[0]
    return value


def _converter(folder: Folder) -> Any:
    from fourm_core.registry.discovery import resolve_ref

    return resolve_ref(folder.form) if folder.form else None


def _to_official(folder: Folder, value: Any) -> Any:
    """The stored value as ml-4m's file holds it (the plugin's ``file_form``; unchanged without one)."""
    converter = _converter(folder)
    return converter.to_official(value) if converter is not None else value


def _from_official(folder: Folder, value: Any) -> Any:
    """ml-4m's file content as the store holds it (a malformed one raises ValueError, reported with the member)."""
    converter = _converter(folder)
    return converter.from_official(value) if converter is not None else value


# ---------------------------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------------------------


class _ShardWriter:
    """Deterministic tar shards ``shard-00000.tar``... of ``size`` members each (mtime 0, owner 0)."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size, self.count, self.shards = folder, size, 0, 0
        self.tar: tarfile.TarFile | None = None

    def add(self, name: str, data: bytes) -> None:
        if self.tar is None or self.count == self.size:
            self.close()
            self.tar = tarfile.open(self.folder / f"shard-{self.shards:05d}.tar", "w", format=tarfile.USTAR_FORMAT)
            self.shards, self.count = self.shards + 1, 0
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        self.tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


def export_ml4m(
    store_path: str | Path,
    out: str | Path,
    only: Sequence[str] = (),
    shard_size: int = 1000,
    registry: Any | None = None,
) -> Ml4mReport:
    """Write the store's exportable parts under ``out`` in ml-4m's layout; only samples done in every exported part
    are written (their keys, the store index as 8 digits, align the folders)."""
    from fourm_core.registry import Registry

    registry = registry if registry is not None else Registry()
    store = AlignedStore.open(store_path, mode="r")
    known, notes = folders_for(registry, store.preset)
    unknown = sorted(set(only) - {f.modality for f in known} - {CROP_FOLDER})
    if unknown:
        raise Ml4mLayoutError(
            f"--only: {', '.join(unknown)} cannot be exported (exportable: "
            f"{', '.join(sorted({str(f.modality) for f in known if f.modality}))})"
        )
    report = Ml4mReport(skipped=notes)
    parts = set(store.parts())
    chosen = [f for f in known if f.part in parts and (not only or f.modality in only or f.modality is None)]
    if not any(f.part.endswith("/tokens") for f in chosen):
        chosen = [f for f in chosen if f.folder != CROP_FOLDER]  # crops only travel with the tokens they made
    for part in sorted(parts):
        if part != "source" and not any(f.part == part for f in chosen) and not only:
            report.skipped.append(f"{part}: no ml-4m file form for its arrays")
    if not chosen:
        raise Ml4mLayoutError(f"{store_path}: nothing to export (parts: {', '.join(sorted(parts)) or 'none'})")
    done = np.ones(store.n_samples, bool)
    for f in chosen:
        done &= store.state(f.part) == DONE
    out = Path(out)
    for f in chosen:
        target = out / f.folder
        if target.exists() and any(target.iterdir()):
            raise Ml4mLayoutError(f"{target} already holds files; export into a new --out")
        target.mkdir(parents=True, exist_ok=True)
        writer = _ShardWriter(target, shard_size)
        for block in range(store.n_blocks):
            r = store.block_range(block)
            if not done[r.start : r.stop].any():
                continue
            for index, row in zip(r, store.read_block(f.part, block), strict=True):
                if done[index] and row is not None:
                    writer.add(f"{index:08d}.{f.ext}", _encode(_to_official(f, row[f.array]), f.ext))
        writer.close()
        report.folders.append(f)
        report.shards = max(report.shards, writer.shards)
    report.samples = int(done.sum())
    return report


# ---------------------------------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------------------------------


def _shards(folder: Path) -> list[Path]:
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        raise Ml4mLayoutError(f"{folder}: no .tar shards (ml-4m's layout is <modality>/shard-00000.tar ...)")
    return shards


def _members(tar_path: Path) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(tar_path) as tar:
            return [m for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError) as exc:
        raise Ml4mLayoutError(f"{tar_path}: not a readable tar ({exc})") from None


def _split(tar_path: Path, member: str, wanted: Folder) -> tuple[str, str]:
    key, dot, ext = member.rpartition(".")
    if not dot or not key:
        raise Ml4mLayoutError(f"{tar_path}: member {member!r} is not <key>.<ext>")
    if ext.lower() not in _READ_EXTS[wanted.ext]:
        raise Ml4mLayoutError(
            f"{tar_path}: member {member!r} has extension .{ext}; {wanted.folder} expects "
            + " or ".join(f".{e}" for e in _READ_EXTS[wanted.ext])
        )
    return key, ext.lower()


def _index(folder: Path, wanted: Folder) -> list[tuple[Path, list[str]]]:
    """Per shard, its sample keys in order."""
    return [(tar, [_split(tar, m.name, wanted)[0] for m in _members(tar)]) for tar in _shards(folder)]


def _align(reference: list[tuple[Path, list[str]]], other: list[tuple[Path, list[str]]]) -> None:
    """``other`` must hold the reference's keys, shard by shard, in its order (ml-4m zips the shards)."""
    if len(other) != len(reference):
        raise Ml4mLayoutError(
            f"{other[0][0].parent}: {len(other)} shards, but {reference[0][0].parent} has "
            f"{len(reference)} (ml-4m zips the folders' shards one to one)"
        )
    for (ref_tar, ref_keys), (tar, keys) in zip(reference, other, strict=True):
        for i, key in enumerate(ref_keys):
            if i >= len(keys) or keys[i] != key:
                found = f"member {i} is {keys[i]!r}" if i < len(keys) else f"it has {len(keys)} members"
                raise Ml4mLayoutError(f"{tar}: sample key {key!r} (member {i} of {ref_tar}) is missing; {found}")
        if len(keys) > len(ref_keys):
            raise Ml4mLayoutError(f"{tar}: member {keys[len(ref_keys)]!r} has no sample in {ref_tar}")


def _values(folder: Path, wanted: Folder) -> Iterator[Any]:
    for tar_path in _shards(folder):
        with tarfile.open(tar_path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                _, ext = _split(tar_path, member.name, wanted)
                handle = tar.extractfile(member)
                try:
                    yield _from_official(wanted, _decode(handle.read() if handle else b"", ext, wanted))
                except Exception as exc:  # any decoder's complaint: name the tar and the member
                    raise Ml4mLayoutError(
                        f"{tar_path}: member {member.name!r} does not decode as .{ext} ({exc})"
                    ) from None


def import_ml4m(
    root: str | Path,
    out: str | Path,
    preset: str,
    image_size: int,
    block_size: int = 64,
    only: Sequence[str] = (),
    registry: Any | None = None,
) -> Ml4mReport:
    """Read ml-4m's layout under ``root`` into a new store at ``out``; folders no registered modality names are
    listed as skipped. Samples keep the order of the first folder's shards."""
    from fourm_core.registry import Registry
    from fourm_core.storage.layout import resolve
    from fourm_core.storage.location import as_location
    from fourm_core.vocab import build_manifest

    registry = registry if registry is not None else Registry()
    root, target = Path(root), as_location(out)  # the new store: a path or an fsspec URL
    if not root.is_dir():
        raise Ml4mLayoutError(f"{root}: not a folder (expected ml-4m's <modality>/shard-00000.tar layout)")
    if target.exists():
        raise Ml4mLayoutError(f"{target.display()} already exists; import into a new --out")
    known, _ = folders_for(registry, preset)
    by_name = {f.folder: f for f in known}
    report = Ml4mReport()
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    chosen = [by_name[n] for n in present if n in by_name and (not only or by_name[n].modality in (*only, None))]
    report.skipped = [f"{n}: no registered modality reads this ml-4m folder" for n in present if n not in by_name]
    if not any(f.modality for f in chosen):
        raise Ml4mLayoutError(f"{root}: no folder a registered modality reads (found: {', '.join(present) or 'none'})")
    indexes = {f.folder: _index(root / f.folder, f) for f in chosen}
    reference = indexes[chosen[0].folder]
    for f in chosen[1:]:
        _align(reference, indexes[f.folder])
    n = sum(len(keys) for _, keys in reference)
    report.samples, report.shards = n, len(reference)
    store = AlignedStore.create(target, n, image_size, preset, block_size)
    store.set_manifest(build_manifest(registry, preset))
    for f in chosen:
        values = _values(root / f.folder, f)
        first = next(_values(root / f.folder, f))
        provenance = {"labeler": IMPORT_LABELER, "folder": f.folder, "config_hash": f"{IMPORT_LABELER}-{f.folder}"}
        if f.modality is None:
            from fourm_core.spec import ArraySpec

            arrays = [ArraySpec(name=f.array, dtype="int32", shape=tuple(np.shape(first)))]
            store.ensure(f.part, arrays, provenance=provenance)
        else:
            spec = registry.get(f.modality).spec
            arrays = [a for a in spec.storage if a.name == f.array]
            dims = {}
            if f.ext == "npy":
                shape = np.shape(first)
                dims = {"K": shape[0], "L": shape[-1]} if len(shape) == 2 else {"K": 1, "L": shape[-1]}
                provenance["crops"] = dims["K"]
            try:
                resolve(arrays[0], image_size, dims)
            except Exception as exc:
                raise Ml4mLayoutError(f"{root / f.folder}: {exc}") from None
            store.ensure(f.part, arrays, dims=dims, provenance=provenance)
        layout = store.layouts(f.part)[f.array]
        shard_of = [tar for tar, keys in indexes[f.folder] for _ in keys]
        for block in range(store.n_blocks):
            rows = []
            for index in store.block_range(block):
                value = next(values)
                if f.ext == "npy" and f.modality is not None and np.ndim(value) == 1:
                    value = np.asarray(value)[None]
                if not layout.ragged and tuple(np.shape(value)) != layout.shape:
                    raise Ml4mLayoutError(
                        f"{shard_of[index]}: sample {index} of {f.folder} has shape {np.shape(value)}, "
                        f"expected {layout.shape} (store image size {image_size}; pass --image-size)"
                    )
                rows.append({f.array: value})
            try:
                store.write_block(f.part, block, rows)
            except StoreError as exc:
                raise Ml4mLayoutError(f"{root / f.folder}: {exc}") from None
        report.folders.append(f)
    return report
