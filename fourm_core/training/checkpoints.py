"""Checkpoints a resume can trust: only tags the engine wrote, the run checked before anything is read, nothing
unpickled but tensors and plain data, a damaged latest checkpoint replaced by the one before it.

A run folder is something a user opens later, possibly after someone else could write into it, so nothing in it
may run code. DeepSpeed's own loader unpickles ``checkpoints/<tag>/*.pt`` with ``weights_only=False`` and follows
``checkpoints/latest`` wherever it points; here:

* a tag is ``step`` + 8 digits, a real folder directly under ``checkpoints/`` (``latest`` naming anything else is
  refused, not followed);
* beside DeepSpeed's files each tag holds :data:`MANIFEST` (JSON, written after them): the step, the run's
  fingerprint and every file's size and SHA-256. The fingerprint is compared first, from JSON; a missing manifest
  or a file that differs marks the checkpoint damaged (a kill during a save, a bad disk), and the previous one is
  used with a warning;
* every ``.pt`` file is scanned for the globals its pickle would import (statically, nothing runs) and refused if
  one is not in :func:`safe_globals`; DeepSpeed's loads then go through ``torch.load(weights_only=True)``
  (:class:`SafeLoads`), so even a global the scan missed cannot run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fourm_core.errors import UserError, one_line

__all__ = [
    "MANIFEST",
    "CheckpointError",
    "CheckpointWarning",
    "Chosen",
    "SafeLoads",
    "choose_checkpoint",
    "prune",
    "save_checkpoint",
    "trim_log",
]

MANIFEST = "fourm_checkpoint.json"
LATEST = "latest"
TAG = re.compile(r"step(\d{8})")
#: a manifest or ``latest`` larger than this is not one the engine wrote (and is not read whole)
_SMALL = 1 << 20


class CheckpointError(UserError, ValueError):
    """A checkpoint that must not be loaded (written by someone else, pointing outside the run, holding code) or
    no usable checkpoint at all: a user error, one line naming the file."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped for an earlier one."""


@dataclass(frozen=True)
class Chosen:
    """The checkpoint a resume loads: its tag, step and folder."""

    tag: str
    step: int
    path: Path


class _Damaged(Exception):
    """Internal: this checkpoint is incomplete or differs from what was written (fall back to an earlier one)."""


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def safe_globals() -> list[Any]:
    """The only non-torch objects DeepSpeed's optimizer files hold (ZeRO and bf16 optimizer state): a loss scaler
    (plain numbers), the ZeRO stage enum and a fragment address (two ints). Their unpickling sets attributes and
    calls no code of the file's choosing."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, ZeroStageEnum, fragment_address]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _files(tag_dir: Path) -> dict[str, Path]:
    """The files of a checkpoint folder; a link or a sub-folder is refused (the engine writes neither, and a link
    would let a load read outside the run)."""
    out: dict[str, Path] = {}
    for entry in sorted(tag_dir.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            raise CheckpointError(f"{entry}: a checkpoint holds plain files only, this is a link or a folder")
        if entry.name != MANIFEST:
            out[entry.name] = entry
    return out


def write_manifest(tag_dir: Path, step: int, fingerprint: str) -> None:
    """Record what a resume must find in ``tag_dir`` (written last, atomically: no manifest = incomplete)."""
    files = {name: {"size": p.stat().st_size, "sha256": _sha256(p)} for name, p in _files(tag_dir).items()}
    record = {"step": step, "fingerprint": fingerprint, "files": files}
    tmp = tag_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, tag_dir / MANIFEST)


def writes_checkpoints(node_local: bool, rank: int, local_rank: int) -> bool:
    """Whether this process keeps a checkpoint folder (removes a stale tag, writes the manifest, prunes): rank 0
    for an ``out_dir`` every node shares, the first process of each node for node-local folders (DeepSpeed's
    ``checkpoint.use_node_local_storage``, which makes that process write the model states on every node)."""
    return local_rank == 0 if node_local else rank == 0


def save_checkpoint(
    engine: Any, ckpt_dir: Path, step: int, fingerprint: str, rank: int, keep: int, barrier: Callable[[], Any]
) -> None:
    """DeepSpeed's checkpoint of ``step`` (the step and fingerprint in its client state too), then the manifest
    and the pruning of old checkpoints by the process that keeps the folder (:func:`writes_checkpoints`: rank 0,
    or each node's first process when the engine stores checkpoints node-locally; the manifest then lists that
    node's files). A folder of the same tag left by an earlier, interrupted attempt is removed first, so the
    manifest lists exactly this save's files."""
    tag = tag_for(step)
    node_local = bool(getattr(engine, "use_node_local_storage", lambda: False)())
    writer = writes_checkpoints(node_local, rank, int(os.environ.get("LOCAL_RANK", "0")))
    if writer and (ckpt_dir / tag).is_dir() and not (ckpt_dir / tag).is_symlink():
        shutil.rmtree(ckpt_dir / tag)
    barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step, "fingerprint": fingerprint})
    barrier()
    if writer:
        write_manifest(ckpt_dir / tag, step, fingerprint)
        prune(ckpt_dir, keep, step)
    barrier()


def _tags(ckpt_dir: Path) -> dict[int, Path]:
    """step -> folder, for the folders under ``ckpt_dir`` named like a tag (links are not checkpoints)."""
    out = {}
    for p in ckpt_dir.iterdir() if ckpt_dir.is_dir() else ():
        m = TAG.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink():
            out[int(m.group(1))] = p
    return out


def _read_latest(ckpt_dir: Path) -> int | None:
    """The step ``checkpoints/latest`` names; None when there is none or it is empty (a kill while it was written).
    Anything but a tag of this folder is refused, never followed."""
    latest = ckpt_dir / LATEST
    if not latest.exists() and not latest.is_symlink():
        return None
    if latest.is_symlink() or not latest.is_file():
        raise CheckpointError(f"{latest}: expected a small file naming a checkpoint, found a link or a folder")
    with latest.open("rb") as f:
        raw = f.read(64)
    try:
        text = raw.decode().strip()
    except UnicodeDecodeError:
        text = repr(raw[:32])
    if not text:
        return None
    m = TAG.fullmatch(text)
    if m is None:
        raise CheckpointError(
            f"{latest} names {text[:40]!r}, not a checkpoint of this run (expected stepNNNNNNNN, a folder beside it)"
        )
    return int(m.group(1))


def _check(tag_dir: Path, step: int, fingerprint: str) -> None:
    """Raise :class:`_Damaged` for an incomplete or changed checkpoint, :class:`CheckpointError` for one that
    belongs to another run or would import code; return quietly for one that is safe to load."""
    manifest = tag_dir / MANIFEST
    if not manifest.is_file() or manifest.is_symlink():
        raise _Damaged(f"{manifest} is missing (the save did not finish)")
    if manifest.stat().st_size > _SMALL:
        raise _Damaged(f"{manifest} is too large to be a manifest")
    try:
        record = json.loads(manifest.read_bytes())
        files, recorded_step, recorded_fingerprint = record["files"], record["step"], record["fingerprint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _Damaged(f"{manifest} is not a checkpoint manifest ({exc})") from None
    if recorded_fingerprint != fingerprint:
        raise CheckpointError(
            f"{tag_dir} belongs to a different run (data, model or optimiser settings changed); "
            "use another out_dir or start over without resume"
        )
    if recorded_step != step or not isinstance(files, dict):
        raise _Damaged(f"{manifest} records step {recorded_step!r}, the folder is step {step}")
    present = _files(tag_dir)
    for name in sorted(set(present) | set(files)):
        if name not in files:
            raise CheckpointError(f"{tag_dir / name}: not written by this run's engine (not in {MANIFEST})")
        if name not in present:
            raise _Damaged(f"{tag_dir / name} is missing")
        expected, path = files[name], present[name]
        size = expected.get("size") if isinstance(expected, dict) else None
        if path.stat().st_size != size:
            raise _Damaged(f"{path} has {path.stat().st_size} bytes, {size} were written")
        if _sha256(path) != expected["sha256"]:
            raise _Damaged(f"{path} differs from what was written (checksum)")
    for name, path in present.items():
        if name.endswith(".pt"):
            _scan(path)


def _scan(path: Path) -> None:
    """Refuse a ``.pt`` file whose pickle would import anything but tensors, plain data and :func:`safe_globals`
    (read statically: nothing in the file runs)."""
    import torch

    try:
        with torch.serialization.safe_globals(safe_globals()):
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as exc:  # not a zip checkpoint, no data.pkl, a broken zip: not what the engine wrote
        raise CheckpointError(
            f"{path}: not a checkpoint file this engine writes ({one_line(str(exc))[:200]})"
        ) from None
    if unsafe:
        raise CheckpointError(
            f"{path}: refusing to load, its pickle would import {', '.join(sorted(unsafe)[:3])} "
            "(a checkpoint holds tensors and plain data only)"
        )


def choose_checkpoint(ckpt_dir: Path, fingerprint: str, warn: bool = True, at_most: int | None = None) -> Chosen | None:
    """The checkpoint to resume from: the one ``latest`` names (or the newest, without ``latest``), else, when that
    is damaged, the newest earlier intact one, with a :class:`CheckpointWarning` naming each damaged one. None when
    the run has no checkpoint. Raises :class:`CheckpointError` (a ``ValueError``) for a foreign or unsafe one, or
    when every checkpoint is damaged. ``at_most``: none after that step (the newest step every node has, see
    :mod:`fourm_core.training.node_checkpoints`)."""
    tags = _tags(ckpt_dir)
    latest = _read_latest(ckpt_dir)
    if latest is None and not tags:
        return None
    start = latest if latest is not None else max(tags)
    problems: list[str] = []
    if latest is not None and latest not in tags and (at_most is None or latest <= at_most):
        problems.append(f"{ckpt_dir / tag_for(latest)} (named by {LATEST}) does not exist")
    if at_most is not None and at_most < start:
        start = at_most
        problems.append(f"the checkpoints after step {at_most} are not on every node")
    for step in sorted((s for s in tags if s <= start), reverse=True):
        try:
            _check(tags[step], step, fingerprint)
        except _Damaged as exc:
            problems.append(str(exc))
            continue
        if warn:
            for problem in problems:
                warnings.warn(
                    f"checkpoint skipped: {problem}; resuming from {tags[step]}", CheckpointWarning, stacklevel=2
                )
        return Chosen(tag_for(step), step, tags[step])
    raise CheckpointError(f"no usable checkpoint in {ckpt_dir}: {problems[0]}; start over with --restart")


class SafeLoads:
    """DeepSpeed's checkpoint engine with every load done by ``torch.load(weights_only=True)`` (tensors, plain
    data and :func:`safe_globals` only); saving and everything else is the wrapped engine's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def load(self, path: str, map_location: Any = None) -> Any:
        import torch

        try:
            with torch.serialization.safe_globals(safe_globals()):
                return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # the weights-only unpickler's refusal, or a file it cannot read: never run it
            first = one_line((str(exc).strip().splitlines() or [type(exc).__name__])[-1])[:200]
            raise CheckpointError(
                f"{path}: refusing to load, it holds more than tensors and plain data ({first})"
            ) from None

    @staticmethod
    def install(engine: Any) -> None:
        """Make ``engine`` (a DeepSpeed engine) load its checkpoints through :class:`SafeLoads`."""
        if not isinstance(engine.checkpoint_engine, SafeLoads):
            engine.checkpoint_engine = SafeLoads(engine.checkpoint_engine)


def prune(ckpt_dir: Path, keep: int, current: int) -> None:
    """Keep the checkpoint of step ``current`` (just written) and the ``keep - 1`` newest complete ones before it;
    delete every other tag folder before it (incomplete ones included). Folders after it are left: they belong to
    an abandoned run (``--restart``), are never resumed from (``latest`` names ``current``) and are replaced when
    this run reaches their step."""
    tags = _tags(ckpt_dir)
    older = [s for s in sorted(tags, reverse=True) if s < current and (tags[s] / MANIFEST).is_file()]
    kept = {current, *older[: keep - 1]}
    for step, path in tags.items():
        if step < current and step not in kept:
            shutil.rmtree(path, ignore_errors=True)


def trim_log(path: Path, step: int) -> None:
    """Make a log resumed at ``step`` hold no step twice: keep only the records up to ``step`` (the steps after it
    are run again, with the same results), and drop a line torn by a kill. A fresh start (``step`` 0) starts an
    empty log. Replaced atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if step > 0 and isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
