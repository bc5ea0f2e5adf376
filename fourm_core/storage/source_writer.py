"""Write a data source (synthetic world, image folder, a plugin's format ...) into a store's ``source`` part, block
by block.

The source is any :class:`~fourm_core.sources.protocol.Source` (the one source protocol). Writing follows the store's
one-writer-per-block rule, so it runs in worker processes and resumes like labeling.

A source that reads files (a photo folder) may also offer ``inventory()`` (``(name, size, mtime_ns)`` per sample)
and ``pin(names)``. The inventory is recorded when the store is created; a resume compares it with the folder now
and refuses a folder that changed (naming what was added, removed or changed), or with ``append`` adds the new files
as new samples at the end. Either way the source is pinned to the recorded order, so an index never moves: a
scan after a photo was added would otherwise shift every later photo onto another sample.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fourm_core.sources.protocol import Source
from fourm_core.storage.integrity import RECORD
from fourm_core.storage.location import StoreLocation, as_location
from fourm_core.storage.store import DONE, AlignedStore

__all__ = ["SOURCE_PART", "SourceChangedError", "SourceWriteReport", "create_source_store", "write_source"]

SOURCE_PART = "source"
#: the recorded file list (JSON ``[[name, size, mtime_ns], ...]``), written atomically beside the Zarr metadata
INVENTORY = "source_files.json"


class SourceChangedError(ValueError):
    """The source's files changed since the store was made; the message says how (resume would mix samples)."""


@dataclass
class SourceWriteReport:
    """Outcome of writing a source."""

    written: int
    failed: int
    seconds: float
    errors: dict[int, str]

    @property
    def samples_per_s(self) -> float:
        """Throughput of this run."""
        return (self.written + self.failed) / self.seconds if self.seconds else 0.0


def create_source_store(
    path: str | Path | StoreLocation,
    adapter: Source,
    image_size: int,
    preset: str,
    block_size: int = 64,
    manifest: Any | None = None,
    append: bool = False,
) -> AlignedStore:
    """Create a store for ``adapter`` (or reopen it to resume, after checking it holds the same source and, for a
    source with an inventory, the same files; ``append`` adds new files as new samples). ``path``: a folder or an
    fsspec URL (see :mod:`fourm_core.storage.location`)."""
    location = as_location(path)
    description = adapter.describe()
    inventory = getattr(adapter, "inventory", None)
    if location.exists():
        store = AlignedStore.open(location)
        if store.root.attrs.get("source", {}).get("description") != description:
            raise ValueError(f"{store.url} holds another source ({store.root.attrs.get('source')}); refusing to mix")
        if inventory is not None and location.exists(INVENTORY):
            store = _resume_inventory(store, adapter, [tuple(e) for e in inventory()], append)
        return store
    store = AlignedStore.create(location, len(adapter), image_size, preset, block_size)
    if inventory is not None:
        _save_inventory(location, [tuple(e) for e in inventory()])
    store.update_attrs(
        {"source": {"name": adapter.name, "fields": [a.name for a in adapter.arrays()], "description": description}}
    )
    if manifest is not None:
        store.set_manifest(manifest)
    store.ensure(SOURCE_PART, adapter.arrays(), provenance={"source": adapter.name, **description})
    return store


def _save_inventory(location: StoreLocation, entries: list[tuple[Any, ...]]) -> None:
    # atomic (a rename locally, one whole-object PUT remotely): a killed run leaves the old list or the new one
    location.write_bytes(INVENTORY, json.dumps([list(e) for e in entries]).encode())


def _load_inventory(location: StoreLocation) -> list[tuple[Any, ...]]:
    """The recorded ``(name, size, mtime_ns)`` list; a damaged file is named (never read as an empty folder)."""
    from fourm_core.errors import FileFormatError, read_json

    path = location.display(INVENTORY)
    if location.local is not None:
        entries = read_json(location.local / INVENTORY, "recorded file list")
    else:
        try:
            entries = json.loads(location.read_bytes(INVENTORY))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{path}: not a valid recorded file list ({exc})") from None
    if not isinstance(entries, list) or not all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and all(isinstance(v, int) for v in e[1:])
        for e in entries
    ):
        raise SourceChangedError(f"{path}: not a recorded file list (expected [[name, size, mtime_ns], ...])")
    return [tuple(e) for e in entries]


def _differences(recorded: list[tuple[Any, ...]], now: list[tuple[Any, ...]]) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) file names between the recorded inventory and the current one."""
    old = {e[0]: tuple(e[1:]) for e in recorded}
    new = {e[0]: tuple(e[1:]) for e in now}
    added = [n for n in new if n not in old]
    removed = [n for n in old if n not in new]
    changed = [n for n in old if n in new and old[n] != new[n]]
    return added, removed, changed


def _resume_inventory(store: AlignedStore, adapter: Any, now: list[tuple[Any, ...]], append: bool) -> AlignedStore:
    """Compare the files now with the recorded ones; refuse a change, or append new files; pin the source."""
    recorded = _load_inventory(store.location)
    added, removed, changed = _differences(recorded, now)
    if removed or changed or (added and not append):

        def first(names: list[str]) -> str:
            return f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""

        hint = (
            "--append only adds files; restore the others or write a new store"
            if append
            else "rerun with --append to add new files as new samples, or write a new store"
        )
        raise SourceChangedError(
            f"{adapter.describe().get('folder', adapter.name)} changed since {store.url} was made: "
            f"{len(added)} added{first(added)}, {len(removed)} removed{first(removed)}, "
            f"{len(changed)} changed{first(changed)}; {hint}"
        )
    if added:
        recorded += [e for e in now if e[0] in set(added)]
        _save_inventory(store.location, recorded)
    adapter.pin(tuple(e[0] for e in recorded))
    return _grow(store, len(recorded))


def _grow(store: AlignedStore, n_samples: int) -> AlignedStore:
    """Make room for ``n_samples`` (idempotent, so a run killed midway completes on rerun): every part's arrays grow,
    the old last block (now longer) is marked to redo in every part, then ``n_samples`` is updated."""
    old = store.n_samples
    if n_samples <= old:
        return store
    blocks = -(-n_samples // store.block_size)
    for part in store.parts():
        group = store.root[part]
        for name, layout in store.layouts(part).items():
            if not layout.ragged:
                group[name].resize((n_samples, *layout.shape))
        group["_state"].resize((n_samples,))
        if store.has_records(part):
            group[RECORD].resize((blocks, 2))
        if old % store.block_size:
            store.mark_pending(part, old // store.block_size)
    store.update_attrs({"n_samples": n_samples})  # last: until now a rerun sees the old size and grows again
    return AlignedStore.open(store.location)


def _write_block(path: StoreLocation, adapter: Source, block: int) -> tuple[int, int, dict[int, str]]:
    store = AlignedStore.open(path)
    values: list[dict[str, Any] | None] = []
    errors: dict[int, str] = {}
    with store.claim(SOURCE_PART, block) as todo:
        if not todo:
            return 0, 0, {}
        for index in store.block_range(block):
            try:
                values.append(adapter.record(index))
            except Exception as exc:  # a bad sample is recorded with its message; the block goes on
                errors[index] = f"{type(exc).__name__}: {exc}"
                values.append(None)
        store.write_block(SOURCE_PART, block, values, errors)
    state = store.block_state(SOURCE_PART, block)
    done = int((state == DONE).sum())
    return done, len(state) - done, store.errors(SOURCE_PART) if len(state) - done else {}


def write_source(
    store: AlignedStore, adapter: Source, workers: int = 1, on_progress: Callable[[int, int], None] | None = None
) -> SourceWriteReport:
    """Write every block of the source still to do; ``workers > 1`` uses spawned processes."""
    todo = store.todo_blocks(SOURCE_PART)
    start = time.perf_counter()
    written = failed = 0
    errors: dict[int, str] = {}
    if workers <= 1:
        results = (_write_block(store.location, adapter, b) for b in todo)
        for n, (done, bad, errs) in enumerate(results, 1):
            written, failed = written + done, failed + bad
            errors.update(errs)
            if on_progress:
                on_progress(n, len(todo))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_write_block, store.location, adapter, b) for b in todo]
            for n, future in enumerate(as_completed(futures), 1):
                done, bad, errs = future.result()
                written, failed = written + done, failed + bad
                errors.update(errs)
                if on_progress:
                    on_progress(n, len(todo))
    return SourceWriteReport(written, failed, time.perf_counter() - start, errors)
