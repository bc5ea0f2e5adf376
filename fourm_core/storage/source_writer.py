"""Write a data source (synthetic world, image folder, a plugin's format ...) into a store's ``source`` part, block
by block.

The source is any :class:`~fourm_core.sources.protocol.Source` (the one source protocol). Writing follows the store's
one-writer-per-block rule, so it runs in worker processes and resumes like labeling.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fourm_core.sources.protocol import Source
from fourm_core.storage.store import DONE, AlignedStore

__all__ = ["SOURCE_PART", "SourceWriteReport", "create_source_store", "write_source"]

SOURCE_PART = "source"


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
    path: str | Path,
    adapter: Source,
    image_size: int,
    preset: str,
    block_size: int = 64,
    manifest: Any | None = None,
) -> AlignedStore:
    """Create a store for ``adapter`` (or reopen it to resume, after checking it holds the same source)."""
    path = Path(path)
    description = adapter.describe()
    if path.exists():
        store = AlignedStore.open(path)
        if store.root.attrs.get("source", {}).get("description") != description:
            raise ValueError(f"{path} holds another source ({store.root.attrs.get('source')}); refusing to mix")
        return store
    store = AlignedStore.create(path, len(adapter), image_size, preset, block_size)
    store.root.attrs["source"] = {
        "name": adapter.name,
        "fields": [a.name for a in adapter.arrays()],
        "description": description,
    }
    if manifest is not None:
        store.set_manifest(manifest)
    store.ensure(SOURCE_PART, adapter.arrays(), provenance={"source": adapter.name, **description})
    return store


def _write_block(path: str, adapter: Source, block: int) -> tuple[int, int, dict[int, str]]:
    store = AlignedStore.open(path)
    values: list[dict[str, Any] | None] = []
    errors: dict[int, str] = {}
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
        results = (_write_block(str(store.path), adapter, b) for b in todo)
        for n, (done, bad, errs) in enumerate(results, 1):
            written, failed = written + done, failed + bad
            errors.update(errs)
            if on_progress:
                on_progress(n, len(todo))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_write_block, str(store.path), adapter, b) for b in todo]
            for n, future in enumerate(as_completed(futures), 1):
                done, bad, errs = future.result()
                written, failed = written + done, failed + bad
                errors.update(errs)
                if on_progress:
                    on_progress(n, len(todo))
    return SourceWriteReport(written, failed, time.perf_counter() - start, errors)
