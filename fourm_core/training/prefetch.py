"""The training micro-batches, built ahead of the step in worker processes: data loading hidden behind compute.

A micro-batch is a pure function of its first sample position (:meth:`TrainingData.batch`), so the positions a
rank will train on from step ``start`` are known in advance: item ``i`` of :class:`StepPositions` is the ``i``-th
micro-batch from there. ``engine.loader_workers: 0`` builds each one when the step asks for it (the synchronous
path); ``N > 0`` hands the items to a :class:`torch.utils.data.DataLoader` with ``N`` worker processes, each
``engine.prefetch`` items ahead. DataLoader already gives what a hand-written pool would have to redo: workers,
prefetch, in-order delivery (item ``i`` is always the ``i``-th micro-batch, so losses are bit-equal to the synchronous
path and a resume starts at the resumed position), tensors passed through shared memory, and a pinning thread for
CUDA (whose pinned host tensors then copy with ``non_blocking=True`` while the previous step still runs).

Workers are forked from the training process. Two things must not cross that fork: open store handles (zarr and
fsspec objects are not fork-safe), dropped by :meth:`TrainingData.forget_handles` so each worker opens its own; and
the parent's CPU threads: every worker computes with one torch thread, or N workers would each start as many
threads as there are cores and fight the step for them.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from fourm_core.data.collate import CollatedBatch
from fourm_core.errors import UserError, raised_by_fourm
from fourm_core.training.config import RunConfig
from fourm_core.training.data import TrainingData, cast_floats, sample_position

__all__ = ["LoadedBatch", "StepBatches", "StepPositions", "WorkerTraceback"]


@dataclass
class LoadedBatch:
    """One micro-batch and what the log needs of it, counted where it was built (in a worker, off the step)."""

    position: int
    batch: CollatedBatch
    tokens_in: int
    tokens_tgt: int

    def pin_memory(self) -> LoadedBatch:
        """Page-locked copies of the tensors (called by DataLoader's pinning thread when the device is CUDA)."""
        pinned = {k: {n: t.pin_memory() for n, t in d.items()} for k, d in self.batch.mod_dict.items()}
        return replace(self, batch=CollatedBatch(pinned, self.batch.num_encoder_tokens, self.batch.num_decoder_tokens))

    def to(self, device: torch.device, dtype: torch.dtype, non_blocking: bool = False) -> LoadedBatch:
        """On ``device``, floats in ``dtype``: the same tensors as ``cast_floats(batch, dtype).to(device)`` (a cast
        rounds the same on either side of the copy), but copied first so a pinned batch copies asynchronously."""
        moved = {
            k: {n: t.to(device, non_blocking=non_blocking) for n, t in d.items()}
            for k, d in self.batch.mod_dict.items()
        }
        batch = CollatedBatch(moved, self.batch.num_encoder_tokens, self.batch.num_decoder_tokens)
        return replace(self, batch=cast_floats(batch, dtype))


@dataclass(frozen=True)
class _Failure:
    """An exception of a worker, carried to the training process as a result so it is raised there as itself (one
    line for a user mistake) rather than as DataLoader's multi-line "Caught ... in DataLoader worker" wrapper; the
    worker's traceback travels as text (a traceback object cannot cross processes)."""

    error: BaseException
    traceback: str


class WorkerTraceback(Exception):
    """The traceback of a loader worker's exception, as text: the ``__cause__`` of the exception raised again in
    the training process (what ``concurrent.futures`` does), so a traceback shows where it really happened."""


class StepPositions(Dataset[LoadedBatch]):
    """Item ``i``: the ``i``-th micro-batch this rank trains on from step ``first_step`` (accumulation-major, as
    :func:`~fourm_core.training.data.sample_position` lays positions out), up to step ``end_step``."""

    def __init__(self, data: TrainingData, config: RunConfig, first_step: int, end_step: int, rank: int, world: int):
        self.data, self.first_step, self.rank, self.world = data, first_step, rank, world
        self.accum, self.micro_batch = config.engine.grad_accum, config.engine.micro_batch_size
        self.count = max(0, end_step - first_step) * self.accum

    def __len__(self) -> int:
        return self.count

    def position(self, i: int) -> int:
        step, micro = divmod(i, self.accum)
        return sample_position(
            self.first_step + step,
            micro,
            self.rank,
            0,
            accum=self.accum,
            world=self.world,
            micro_batch=self.micro_batch,
        )

    def load(self, i: int) -> LoadedBatch:
        position = self.position(i)
        batch = self.data.batch(position, self.micro_batch)
        tokens_in, tokens_tgt = self.data.useful_tokens(self.data.collator, batch)
        return LoadedBatch(position, batch, tokens_in, tokens_tgt)

    def __getitem__(self, i: int) -> LoadedBatch | _Failure:  # type: ignore[override]
        if get_worker_info() is None:
            return self.load(i)
        try:
            return self.load(i)
        except Exception as exc:  # raised again in the training process by StepBatches
            where = f"loader worker, micro-batch at sample position {self.position(i)}"
            trace = f"in {where}:\n{''.join(traceback.format_exception(exc))}"  # before _portable drops it
            return _Failure(_portable(exc, where), trace)


def _worker_init(worker_id: int) -> None:
    """Runs first in each worker: one CPU thread, and the parent's store handles dropped (reopened on first read)."""
    torch.set_num_threads(1)
    info = get_worker_info()
    assert info is not None and isinstance(info.dataset, StepPositions)
    info.dataset.data.forget_handles()


def _portable(exc: Exception, where: str) -> BaseException:
    """``exc`` as it can cross to the training process and be judged there as it would have been here.

    A ``ValueError`` from inside a library (numpy, torch) is a bug, but re-raised from this fourm module it would
    read as a deliberate user-facing one, so it travels as a ``RuntimeError`` naming it; an exception that does not
    survive pickling (a constructor with other arguments) also travels as one."""
    out: BaseException = exc
    if isinstance(exc, ValueError) and not isinstance(exc, UserError) and not raised_by_fourm(exc):
        out = RuntimeError(f"{type(exc).__name__} in {where}: {exc}")
    else:
        try:  # DataLoader sends it as (class, args): an exception that cannot be rebuilt so would fail to cross
            type(exc)(*exc.args)
        except Exception:
            out = RuntimeError(f"{type(exc).__name__} in {where}: {exc}")
    return out.with_traceback(None)


class StepBatches:
    """The micro-batches of steps ``first_step .. end_step - 1`` on ``device``, in order (an iterator).

    With workers, loading starts as soon as this is made (worker processes fork then), so the first batches are
    ready by the time the first step asks. :meth:`close` ends the workers; the engine calls it after the last step
    (an exception that ends the run ends them too, when this object is collected)."""

    def __init__(
        self,
        data: TrainingData,
        config: RunConfig,
        first_step: int,
        end_step: int,
        *,
        rank: int,
        world: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        e = config.engine
        self.device, self.dtype = torch.device(device), dtype
        self.positions = StepPositions(data, config, first_step, end_step, rank, world)
        self.pinned = e.loader_workers > 0 and self.device.type == "cuda"
        self._next = 0
        self._loader: Iterator[Any] | None = None
        if e.loader_workers and len(self.positions):
            loader = DataLoader(
                self.positions,
                batch_size=None,  # an item is already a collated micro-batch
                shuffle=False,
                num_workers=e.loader_workers,
                prefetch_factor=e.prefetch,
                pin_memory=self.pinned,
                worker_init_fn=_worker_init,
                multiprocessing_context=_fork_context(),
                # the workers' base seed comes from here, not from the global generator the step seeds
                generator=torch.Generator().manual_seed(config.seed),
            )
            self._loader = iter(loader)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> StepBatches:
        return self

    def __next__(self) -> LoadedBatch:
        if self._next >= len(self.positions):
            self.close()
            raise StopIteration
        if self._loader is None:
            loaded: LoadedBatch | _Failure = self.positions.load(self._next)
        else:
            loaded = next(self._loader)
        if isinstance(loaded, _Failure):
            self.close()
            raise loaded.error from WorkerTraceback(loaded.traceback)
        expected = self.positions.position(self._next)
        if loaded.position != expected:  # DataLoader delivers in order; never train on a batch out of place
            raise RuntimeError(f"loader returned the batch of position {loaded.position}, expected {expected}")
        self._next += 1
        return loaded.to(self.device, self.dtype, non_blocking=self.pinned)

    def close(self) -> None:
        """Stop the workers (the DataLoader iterator shuts them down when released)."""
        self._loader = None


def _fork_context() -> multiprocessing.context.BaseContext | None:
    """Fork where the platform has it: a worker starts in milliseconds with the opened data (stores, vocabulary,
    plugins) instead of importing torch and every plugin again; elsewhere the default (the data is pickled)."""
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
