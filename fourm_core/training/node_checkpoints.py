"""Checkpoints of a run on several machines: which filesystem ``out_dir`` is on, checked; one resume point for all.

A run's ``out_dir`` is one of two things, and the config says which (``engine.node_local_checkpoints``):

* **shared** (the default): one folder every process sees (NFS, Lustre, GPFS, a cluster's shared home). Rank 0
  keeps it (manifests, pruning, ``latest``, the log, ``final/``); every rank writes its own ZeRO shard into it.
* **node-local**: each node has its own folder at that path (a local SSD, or a relative ``out_dir`` and a
  different working directory per node). DeepSpeed's ``checkpoint.use_node_local_storage`` makes the first
  process of each node write the model states there too (read in DeepSpeed's engine: ``save_non_zero_checkpoint``
  is decided by the local rank, not the data-parallel rank, and ZeRO loads only its own rank's shard file), and
  that process keeps its node's folder (manifest of its node's files, pruning). Rank 0's node alone gets the log,
  the config and ``final/``. A resume needs every node's checkpoint folders back at that path.

Which one is true is checked at start (:func:`check_out_dir`) rather than trusted: a "shared" folder that some
node does not see, or "node-local" folders that are one, would otherwise only show at the first resume (a rank
that finds no checkpoint while rank 0 loads one hangs DeepSpeed's load, or trains from its initial weights) or as
two nodes overwriting each other's files. Rank 0 draws a number and broadcasts it; each keeper writes its rank into
``<MARK>.<number>`` (a new name each run, so no filesystem cache can answer for an earlier run's file); after a
barrier every rank reads the mark its keeper should have written, and once all have, the keepers remove it.

The resume point is agreed the same way (:func:`agreed_checkpoint`): every rank chooses from the folder it sees
(:func:`~fourm_core.training.checkpoints.choose_checkpoint`, all its checks), the choices are gathered as tensors
(nothing is pickled between ranks), and when nodes differ (a save interrupted on one node) all take the newest
step that every node has intact, or stop with one line when some node has none.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import torch

from fourm_core.training.checkpoints import CheckpointError, Chosen, choose_checkpoint, writes_checkpoints

__all__ = ["MARK", "agreed_checkpoint", "check_out_dir", "disagreement"]

#: the file each keeper of a checkpoint folder writes at start (``<MARK>.<number>``, holding ``<number> <rank>``),
#: read back by every rank and removed
MARK = ".fourm_keeper"
#: a rank's gathered choice: no checkpoint, or a refusal of its own (its message is its own)
_NONE, _REFUSED = -1, -2


def _ranks() -> tuple[int, int, int]:
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def _device() -> torch.device:
    """Where collectives' tensors live: NCCL reduces device tensors only."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather(value: int) -> list[int]:
    """Every rank's ``value``, by rank (an all-gather of one int64 each)."""
    import torch.distributed as dist

    mine = torch.tensor([value], dtype=torch.int64, device=_device())
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return [int(t.item()) for t in out]


def _mode_hint(node_local: bool) -> str:
    if node_local:
        return (
            "with engine.node_local_checkpoints every node keeps its own folder at out_dir (node-local disk); "
            "on a filesystem all nodes share, leave it off"
        )
    return (
        "out_dir must be one folder every node sees (a shared filesystem); for a folder per node (node-local "
        "disk) set engine.node_local_checkpoints: true"
    )


def check_out_dir(ckpt_dir: Path, node_local: bool) -> None:
    """Create ``ckpt_dir`` where it is kept (several processes only) and check, on every rank together, that it is
    shared (or node-local) as configured; a mismatch raises :class:`CheckpointError` on every rank, the ranks that
    saw it naming what they saw. A world of one has nothing to check (nor writes anything here)."""
    import torch.distributed as dist

    rank, world, local = _ranks()
    keeper = writes_checkpoints(node_local, rank, local)
    if world == 1:  # nothing to check, and nothing written yet: a run refused later (model.init) leaves no folder
        return
    nonce = torch.tensor([secrets.randbits(62) if rank == 0 else 0], dtype=torch.int64, device=_device())
    dist.broadcast(nonce, 0)
    number = int(nonce.item())
    mark = ckpt_dir / f"{MARK}.{number}"
    unwritable = None  # said after the barrier, on every rank: one rank raising alone would leave the others waiting
    if keeper:
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = ckpt_dir / f".{MARK}.{number}.{rank}.tmp"
            tmp.write_text(f"{number} {rank}\n")
            os.replace(tmp, mark)
        except OSError as exc:
            unwritable = f"{ckpt_dir}: cannot write there ({exc.strerror or exc})"
    dist.barrier()
    problem = unwritable or _mark_problem(mark, number, rank, keeper, node_local)
    flags = _gather(int(problem is not None))  # also: every rank has read the mark
    if keeper and unwritable is None:
        with contextlib.suppress(OSError):  # another node's keeper removed it first (a shared "node-local" folder)
            mark.unlink()
    if any(flags):
        bad = ", ".join(str(r) for r, f in enumerate(flags) if f)
        if unwritable:
            raise CheckpointError(unwritable)
        raise CheckpointError(
            f"{problem}; {_mode_hint(node_local)}"
            if problem
            else f"{ckpt_dir}: rank(s) {bad} found out_dir not as configured (see their messages)"
        )


def _mark_problem(mark: Path, number: int, rank: int, keeper: bool, node_local: bool) -> str | None:
    """What is wrong with the folder this rank sees, from the mark its keeper wrote (``None``: as configured)."""
    try:
        text = mark.read_text().split()
        seen, writer = int(text[0]), int(text[1])
    except (OSError, ValueError, IndexError):
        return f"{mark.parent} does not hold the mark its keeper wrote at start (a folder rank 0 does not share)"
    if seen != number:
        return f"{mark} does not hold the number it was written with (a folder rank 0 does not share)"
    if node_local and keeper and writer != rank:
        return f"{mark.parent} is kept by rank {writer} on another node too (the folder is shared)"
    return None


def disagreement(steps: list[int], ckpt_dir: Path, node_local: bool) -> str:
    """One line for ranks that found different checkpoints with no common one (``-1``: none found)."""
    shown = ", ".join(f"rank {r}: {'none' if s < 0 else f'step {s}'}" for r, s in enumerate(steps[:8]))
    more = f" (and {len(steps) - 8} more ranks)" if len(steps) > 8 else ""
    if node_local:
        fix = "copy every node's checkpoint folders back to out_dir on that node, or start over with --restart"
    else:
        fix = _mode_hint(node_local)
    return f"{ckpt_dir}: the ranks find different checkpoints ({shown}{more}); {fix}"


def agreed_checkpoint(ckpt_dir: Path, fingerprint: str, *, node_local: bool, resume: bool) -> Chosen | None:
    """The checkpoint every rank resumes from (``None``: a fresh start), after :func:`check_out_dir`. Each rank
    chooses from the folder it sees; a choice that differs between ranks is replaced by the newest step all have
    intact (each keeper warns about the newer ones it skips); with none in common, or a rank that refuses its
    checkpoint, every rank raises :class:`CheckpointError`."""
    check_out_dir(ckpt_dir, node_local)
    if not resume:
        return None
    rank, world, local = _ranks()
    warn = writes_checkpoints(node_local, rank, local)
    at_most: int | None = None
    while True:
        error: CheckpointError | None = None
        try:
            chosen = choose_checkpoint(ckpt_dir, fingerprint, warn=warn, at_most=at_most)
        except CheckpointError as exc:
            chosen, error = None, exc
        if world == 1:
            if error is not None:
                raise error
            return chosen
        mine = _REFUSED if error is not None else _NONE if chosen is None else chosen.step
        steps = _gather(mine)
        if _REFUSED in steps:
            if error is not None:
                raise error
            refused = ", ".join(str(r) for r, s in enumerate(steps) if s == _REFUSED)
            raise CheckpointError(f"{ckpt_dir}: rank(s) {refused} refused their checkpoint (see their messages)")
        if len(set(steps)) == 1:
            return chosen
        if _NONE in steps or (at_most is not None and min(steps) >= at_most):
            raise CheckpointError(disagreement(steps, ckpt_dir, node_local))
        at_most = min(steps)
