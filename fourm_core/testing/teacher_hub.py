"""A local Hugging Face hub cache holding a tiny random model of every installed plugin's teacher, under the real ids.

Why: a teacher labeler's loading and inference code should be tested through exactly the path real weights take
(``load_hub_model`` finds a snapshot in ``HF_HUB_CACHE`` with ``HF_HUB_OFFLINE=1``, the plugin's ``build(path)``
reads it with transformers or timm, safetensors only) without the network and without gigabytes of weights.
:func:`build_teacher_hub_cache` asks every registered teacher labeler (a ``hub:`` requirement whose factory
returns an ``fp.HubTeacher``) for its random-init stand-in network, which each plugin builds from a small config of
the real library class (``build(None)``), and saves it, with the processor or tokenizer the teacher built next to
it, in the hub-cache layout of :func:`fourm_core.testing.official_hub.add_snapshot`. A run then finds those models
"cached": they are real-class models with random weights, not ``--allow-random-teachers`` stand-ins, so the whole
photo path (plan, label, tokenise, train) is exercised as a user with downloaded weights runs it::

    from fourm_core.testing.teacher_hub import build_teacher_hub_cache
    built = build_teacher_hub_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub")); monkeypatch.setenv("HF_HUB_OFFLINE", "1")

Plugin authors get their own teacher into such a cache with ``only={"<model id>"}``. ``tweak(model_id, network)``
runs before a network is saved, for tests that need outputs past a teacher's thresholds (a detector's class bias,
SAM's IoU head). The core names no modality here: everything comes from the registry. Torch, transformers and timm
are imported only when a cache is built.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TeacherSnapshot", "build_teacher_hub_cache", "remove_teacher", "teacher_models"]

#: the commit a snapshot written here is filed under when the model declares no pinned commit
DEFAULT_COMMIT = "0" * 39 + "2"
#: attributes of a built teacher that hold what ``save_pretrained`` writes next to the weights
_COMPANIONS = ("processor", "image_processor", "tokenizer")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TeacherSnapshot:
    """One tiny teacher written into the cache: which labeler built it, where its snapshot is, how many parameters."""

    model_id: str
    library: str
    modality: str
    labeler: str
    snapshot: Path
    parameters: int


def teacher_models(registry: Any = None) -> dict[str, list[tuple[str, Any]]]:
    """``model id -> [(modality, labeler entry), ...]`` for every labeler that requires a hub teacher, in registry
    order (a model several modalities share, such as a depth model behind depth and normals, appears once)."""
    from fourm_core.registry import Registry

    registry = registry or Registry()
    found: dict[str, list[tuple[str, Any]]] = {}
    for modality in registry.modalities():
        for lab in modality.labelers():
            for req in lab.requires:
                if req.kind == "hub":
                    found.setdefault(req.target, []).append((modality.name, lab))
    return found


def _hub_model(lab: Any, model_id: str) -> Any:
    from fourm_core.labeling.hub import HubModel

    declared = lab.options.get("model")
    if isinstance(declared, dict) and declared.get("model_id") == model_id:
        return HubModel.model_validate(declared)
    return HubModel(model_id=model_id, library="transformers")


def _save(teacher: Any, network: Any, folder: Path) -> None:
    """The network (transformers ``save_pretrained`` or timm ``save_for_hf``, safetensors) and the processor or
    tokenizer the teacher built, as the real repo holds them."""
    if hasattr(network, "save_pretrained"):
        network.save_pretrained(folder, safe_serialization=True)
    else:
        from timm.models._hub import save_for_hf

        save_for_hf(network, folder, safe_serialization=True)
    for name in _COMPANIONS:
        companion = getattr(teacher, name, None)
        if companion is None:
            continue
        parts = [getattr(companion, sub) for sub in ("image_processor", "tokenizer") if hasattr(companion, sub)]
        for part in parts or [companion]:
            if hasattr(part, "save_pretrained"):
                part.save_pretrained(folder)


def _complete(folder: Path, model: Any) -> None:
    """Give the folder every file the model declares: a sharded repo's index names the single weight file (real
    repos of big models are sharded; a tiny one fits in one shard). Anything else missing is an error."""
    index = "model.safetensors.index.json"
    if index in model.files and not (folder / index).exists() and (folder / "model.safetensors").exists():
        from safetensors import safe_open

        shard = "model-00001-of-00001.safetensors"
        (folder / "model.safetensors").rename(folder / shard)
        with safe_open(str(folder / shard), "pt") as f:
            keys = list(f.keys())
        (folder / index).write_text(json.dumps(dict(metadata={}, weight_map=dict.fromkeys(keys, shard))))
    lacking = [name for name in model.files if not (folder / name).is_file()]
    if lacking:
        raise RuntimeError(f"tiny {model.model_id}: the teacher's export has no {', '.join(lacking)}")


def _file(cache: Path, model: Any, folder: Path) -> Path:
    """File ``folder`` in ``cache`` as ``hf download <id> [--revision R]`` leaves it: a pinned commit is the snapshot's
    own name (no ref), a branch or pull-request ref names the snapshot's commit, no revision is ``main``."""
    from fourm_core.testing.official_hub import add_snapshot

    revision = model.revision
    commit = revision if revision and _COMMIT.match(revision) else DEFAULT_COMMIT
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    pinned = bool(revision and _COMMIT.match(revision))
    return add_snapshot(cache, model.model_id, files, commit=commit, refs=() if pinned else (revision or "main",))


def build_teacher_hub_cache(
    cache: str | Path,
    *,
    registry: Any = None,
    only: Iterable[str] | None = None,
    preset: str = "paper",
    image_size: int = 64,
    tweak: Callable[[str, Any], None] | None = None,
) -> dict[str, TeacherSnapshot]:
    """Write a tiny random model of each teacher (every hub model a labeler requires, or the ids in ``only``) into
    the hub cache ``cache``; returns ``model id -> TeacherSnapshot``.

    Each network is the teacher's own random-init stand-in (the plugin's small config of the real class, its fixed
    seed) built for ``preset`` (``paper``: the widths real weights have, e.g. a text encoder's), so loading it back
    passes the teacher's own checks. A model no labeler can build (a labeler that copies another teacher's output)
    is taken from the next labeler that requires it; none at all is an error."""
    from fourm_core.labeling.api import LabelContext, build_labeler
    from fourm_core.labeling.hub_teacher import HubTeacher
    from fourm_core.registry import Registry

    registry = registry or Registry()
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = set(only) if only is not None else None
    options = {"teacher_weights": "random", "teacher_downloads": False, "device": "cpu", "dtype": "fp32"}
    context = LabelContext(
        preset=preset,
        image_size=image_size,
        source_fields=(),  # the networks are built, not run: no sample is read
        options=options,
        modalities={m.name: m.spec for m in registry.modalities()},
    )
    built: dict[str, TeacherSnapshot] = {}
    for model_id, users in teacher_models(registry).items():
        if wanted is not None and model_id not in wanted:
            continue
        for modality, lab in users:
            teacher = build_labeler(lab, registry.get(modality).spec, context)
            if isinstance(teacher, HubTeacher):
                break
        else:
            raise RuntimeError(f"no labeler of {model_id} builds a hub teacher ({[m for m, _ in users]})")
        network = teacher.network
        if tweak is not None:
            tweak(model_id, network)
        model = _hub_model(lab, model_id)
        with tempfile.TemporaryDirectory(prefix="tiny-teacher-") as tmp:
            folder = Path(tmp)
            _save(teacher, network, folder)
            _complete(folder, model)
            snapshot = _file(cache, model, folder)
        parameters = sum(int(p.numel()) for p in network.parameters()) if hasattr(network, "parameters") else 0
        built[model_id] = TeacherSnapshot(model_id, model.library, modality, lab.name, snapshot, parameters)
    if wanted is not None and wanted - set(built):
        raise KeyError(f"no registered labeler requires {sorted(wanted - set(built))}")
    return built


def remove_teacher(cache: str | Path, model_id: str) -> None:
    """Drop ``model_id`` from the cache (a test of the skip path for one teacher)."""
    shutil.rmtree(Path(cache) / f"models--{model_id.replace('/', '--')}", ignore_errors=True)
