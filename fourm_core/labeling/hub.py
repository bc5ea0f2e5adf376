"""Teachers whose weights live on the Hugging Face hub: where they come from, whether a run can have them, and the
batched labeler base that runs them.

A plugin declares its teacher's weights with :class:`HubModel` (torch-free, in ``plugin.py``) and its labeler with
``fp.teacher_labeler(factory=..., model=HubModel(...))``, which adds the ``hub:<model id>`` requirement; the
labeling runner asks :func:`teacher_status` before any compute whether the weights are cached, downloadable, to be
replaced by a random-init stand-in (only with ``allow_random_teachers``) or missing, in which case the modality is
skipped with one line naming the model id and the ``hf download`` command that fetches it.

At labeling time the factory returns a subclass of :class:`HubTeacher` (plugins reach it as ``fp.HubTeacher``; the
plugin boundary allows no other core import). The base resolves the weights once (:func:`load_hub_model`: the cache
without touching the network, else a download when allowed, only json / safetensors / text / tokenizer files, never
pickles), picks the device and precision from the run options (:func:`teacher_options`), hands the subclass batches
of images resized once per resolution, isolates bad samples (one broken image fails alone), and writes the
provenance (model id, revision and commit, resolution, dtype, device, real or random-init weights).

This module imports no torch at import time: torch is imported inside the methods that run the teacher.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fourm_core.errors import UsageError
from fourm_core.hub import HubAssetError, hub_cache_dir, is_offline, is_repo_id

__all__ = [
    "ALLOW_RANDOM_OPTION",
    "DEVICE_OPTION",
    "DOWNLOAD_OPTION",
    "DTYPE_OPTION",
    "RUNTIME_OPTIONS",
    "RUNTIME_PROVENANCE",
    "WEIGHTS_OPTION",
    "HubModel",
    "HubTeacher",  # noqa: F822 - served by __getattr__ from hub_teacher
    "TeacherOptions",
    "TeacherUnavailable",
    "hf_download_hint",
    "load_hub_model",
    "resolve_device",
    "teacher_options",
    "teacher_status",
]

#: Run option (``LabelContext.options``): allow seeded random-init stand-ins for teachers whose weights are missing
#: (the synthetic-world demo and tests); without it such a modality is skipped.
ALLOW_RANDOM_OPTION = "allow_random_teachers"
#: Run option: ``cpu``, ``cuda`` (an error without a GPU) or ``auto`` (cuda when available).
DEVICE_OPTION = "device"
#: Run option: ``fp32``, ``bf16`` or ``fp16``: the precision teachers run in.
DTYPE_OPTION = "dtype"
#: Run option: ``False`` forbids downloading teacher weights even when online (cache or random-init only).
DOWNLOAD_OPTION = "teacher_downloads"
#: Run option: ``"random"`` forces random-init teachers even when weights are there; ``"auto"`` (default) does not.
WEIGHTS_OPTION = "teacher_weights"
#: Run options left out of the resume check (config hash): those that change how labeling runs, not what it writes,
#: and the precision, which the labelers it affects (teachers) record in their provenance, which is hashed.
RUNTIME_OPTIONS = frozenset(
    {ALLOW_RANDOM_OPTION, DEVICE_OPTION, DOWNLOAD_OPTION, DTYPE_OPTION, "workers", "torch_threads"}
)
#: Provenance keys that say how a part was computed, not what it holds: left out of the resume check.
RUNTIME_PROVENANCE = frozenset({"device", "batch_size"})

#: What a teacher download fetches besides the model's declared ``files``: configs, safetensors weights and their
#: indexes, tokenizer and processor files. Never ``.bin`` / ``.pth`` / ``.pt`` pickles.
ALLOW_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken")

Status = Literal["cached", "download", "random", "missing"]


class TeacherUnavailable(HubAssetError):
    """A teacher's weights cannot be had (not cached and offline, downloads off, or a failed download) and random-init
    stand-ins are not allowed; the message is one line naming the model id and the ``hf download`` command."""


class HubModel(BaseModel):
    """A teacher's weights on the Hugging Face hub, as a plugin declares them (no torch, no network).

    ``files`` are what must be in the local cache for the weights to count as available (the config and the
    safetensors weights, typically); ``library`` says which package loads them. ``note`` is for the reader (why this
    model and not the paper's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(..., description="hub repo id, owner/name")
    library: Literal["transformers", "timm"] = Field(..., description="the package that loads the weights")
    revision: str | None = Field(None, description="branch, tag or commit; default the repo's main")
    files: tuple[str, ...] = Field(("config.json",), min_length=1, description="files the cache must hold")
    note: str = ""

    @field_validator("model_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        if not is_repo_id(value):
            raise ValueError(f"{value!r} is not a hub repo id (owner/name)")
        return value

    @field_validator("files")
    @classmethod
    def _no_pickles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        pickles = [f for f in value if f.endswith((".bin", ".pth", ".pt", ".pkl", ".ckpt"))]
        if pickles:
            raise ValueError(f"files {pickles}: teachers load safetensors only, never pickled weights")
        return value

    def requirement(self) -> str:
        """The ``hub:<model id>`` requirement string of a labeler that runs this teacher."""
        return f"hub:{self.model_id}"


class TeacherOptions(BaseModel):
    """The run options a teacher reads (from ``LabelContext.options``; unknown keys are other labelers' business)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    allow_random_teachers: bool = False
    teacher_downloads: bool = True
    teacher_weights: Literal["auto", "random"] = "auto"

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_aliases(cls, value: Any) -> Any:
        aliases = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
        return aliases.get(str(value).lower(), str(value).lower()) if value is not None else "fp32"

    @property
    def force_random(self) -> bool:
        """Whether the run asked for random-init teachers even where real weights exist."""
        return self.teacher_weights == "random"


def teacher_options(options: Mapping[str, Any] | None) -> TeacherOptions:
    """The teacher settings of a run's options; a bad value is a one-line :class:`UsageError`."""
    try:
        return TeacherOptions.model_validate(dict(options or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"labeling option {where}={first.get('input')!r}: {first['msg']}") from None


def hf_download_hint(model: HubModel) -> str:
    """The command that puts ``model``'s weights in the hub cache."""
    rev = f" --revision {model.revision}" if model.revision else ""
    return f"hf download {model.model_id}{rev}"


def _cached_file(model: HubModel, name: str, cache: Path) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model.model_id, name, cache_dir=cache, revision=model.revision)
    except Exception:  # noqa: BLE001 - a malformed cache or revision is "not cached"
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _cached_snapshot(model: HubModel) -> Path | None:
    """The snapshot folder holding every one of ``model.files`` in the hub cache, looked up offline; else None."""
    cache = hub_cache_dir()
    folders = set()
    for name in model.files:
        found = _cached_file(model, name, cache)
        if found is None:
            return None
        folder = found
        for _ in Path(name).parts:  # the file may sit in a sub-folder of the snapshot
            folder = folder.parent
        folders.add(folder)
    return folders.pop() if len(folders) == 1 else None


def teacher_status(model: HubModel | Mapping[str, Any], options: Mapping[str, Any] | None = None) -> tuple[Status, str]:
    """Whether a run with ``options`` can have ``model``'s weights, decided before any compute, and why.

    ``cached`` (all ``files`` in the hub cache), ``download`` (not cached, online and downloads allowed),
    ``random`` (random-init stand-in: forced by ``teacher_weights=random``, or weights unavailable and
    ``allow_random_teachers`` set) or ``missing`` (the reason names the model id and the ``hf download`` command).
    ``HF_HUB_OFFLINE`` and the cache location are read now, not at import."""
    model = model if isinstance(model, HubModel) else HubModel.model_validate(model)
    opts = teacher_options(options)
    if opts.force_random:
        return "random", f"{model.model_id}: random-init teacher ({WEIGHTS_OPTION}=random)"
    if _cached_snapshot(model) is not None:
        return "cached", f"{model.model_id}: in the hub cache {hub_cache_dir()}"
    offline = is_offline()
    if not offline and opts.teacher_downloads:
        return "download", f"{model.model_id}: not cached, will be downloaded into {hub_cache_dir()}"
    why = "HF_HUB_OFFLINE is set" if offline else f"downloads are off ({DOWNLOAD_OPTION}=false)"
    if opts.allow_random_teachers:
        return "random", f"{model.model_id}: not cached and {why}; random-init teacher (allow_random_teachers)"
    return "missing", (
        f"teacher {model.model_id} is not in the hub cache {hub_cache_dir()} and {why}; fetch it with "
        f"`{hf_download_hint(model)}` (or allow random-init stand-ins with --allow-random-teachers, for tests)"
    )


def load_hub_model(model: HubModel | Mapping[str, Any], options: Mapping[str, Any] | None = None) -> Path | None:
    """The local snapshot folder of ``model`` (the cache, read without the network; else downloaded when online and
    allowed), or None when the run uses a random-init stand-in (see :func:`teacher_status`).

    Raises :class:`TeacherUnavailable` (one line, naming the model id and ``hf download``) otherwise, and when a
    download lacks one of the declared ``files``."""
    model = model if isinstance(model, HubModel) else HubModel.model_validate(model)
    status, reason = teacher_status(model, options)
    if status == "random":
        return None
    if status == "missing":
        raise TeacherUnavailable(reason)
    if status == "cached":
        folder = _cached_snapshot(model)
        if folder is not None:
            return folder
    from fourm_core.hub import resolve

    patterns = (*ALLOW_PATTERNS, *model.files)
    try:
        folder = resolve(model.model_id, model.revision, kind="teacher weights", allow_patterns=patterns)
    except HubAssetError as exc:
        raise TeacherUnavailable(f"{exc}; or `{hf_download_hint(model)}`") from None
    lacking = [name for name in model.files if not (folder / name).is_file()]
    if lacking:
        raise TeacherUnavailable(
            f"teacher {model.model_id}: the snapshot {folder} has no {', '.join(lacking)}; fetch them with "
            f"`{hf_download_hint(model)}`"
        )
    return folder


def resolve_device(device: str) -> str:
    """``cpu`` / ``cuda`` / ``auto`` to the torch device a teacher runs on; ``cuda`` without a GPU is a one-line
    :class:`~fourm_core.devices.DeviceError` (a :class:`UsageError`), by the rule every stage shares."""
    from fourm_core.devices import resolve_device as shared

    return shared(device, "--device")


def __getattr__(name: str) -> Any:
    """``HubTeacher`` lives in :mod:`fourm_core.labeling.hub_teacher` (it builds on this module); served from here."""
    if name == "HubTeacher":
        from fourm_core.labeling.hub_teacher import HubTeacher

        return HubTeacher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
