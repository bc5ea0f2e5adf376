"""``fourm data label``: run every modality's pseudo-labeler over a store, in dependency order, resumably.

The unit of work is a store block (one writer per block, see :mod:`fourm_core.storage.store`). For each modality in
registry order (dependencies first) the runner picks a labeler (the user's choice, else the first candidate, default
first, whose requirements hold; an ``explicit`` stand-in only when named), checks that what it requires is there,
the factory's ``plan_check`` included (skipping the modality with a message otherwise), declares the modality's raw part
with the labeler's provenance, and labels the blocks still to do, in worker processes when ``workers > 1``. A killed
run restarts where it stopped: finished blocks are skipped, unfinished ones are rewritten whole, and since labelers
are deterministic per sample the result equals an uninterrupted run.

Before labeling, the store's manifest is compared with the installed plugins (against the text vocabulary the store
records: see :mod:`fourm_core.storage.manifest`), written blocks that lost a file are marked to redo, and a block
whose inputs (source or dependencies) are not all written waits (it stays to do, with a note) instead of being
written as failed. Each block is claimed under a lock, so two runs on one store share the work without clashing.
With ``shard=I/N`` (``fourm data label --shard I/N``) a run labels, repairs and marks only the blocks of that shard
(block ``b`` is shard ``b % N``'s, see :mod:`fourm_core.storage.shards`), so N machines label one store at once; a
later run without a shard finishes whatever is left.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fourm_core.labeling.api import LabelContext, LabelError, SampleView, build_labeler, config_hash, label_many
from fourm_core.labeling.hub import (
    RUNTIME_OPTIONS,
    RUNTIME_PROVENANCE,
    HubModel,
    TeacherUnavailable,
    teacher_status,
)
from fourm_core.registry import Registry
from fourm_core.spec import LabelerSpec, ModalitySpec
from fourm_core.storage.location import StoreLocation
from fourm_core.storage.manifest import require_manifest
from fourm_core.storage.shards import Shard, as_shard, repair_blocks
from fourm_core.storage.source_writer import SOURCE_PART
from fourm_core.storage.store import DONE, FAILED, AlignedStore, BlockDamagedError

__all__ = ["ModalityPlan", "label_store", "plan_labeling", "raw_part"]


def raw_part(name: str) -> str:
    """Store part holding a modality's labeler output."""
    return f"{name}/raw"


@dataclass
class ModalityPlan:
    """What the runner will do (or did) for one modality."""

    name: str
    labeler: str | None
    skip_reason: str | None = None
    #: the teacher's weights the chosen labeler runs (hub id), or, for a skipped modality, the missing teacher's
    model_id: str | None = None
    #: where those weights come from: cached | download | random | missing (see ``teacher_status``)
    weights: str | None = None
    #: the teachers behind a labeler that computes from other modalities' labels (edges of SAM instances, metadata
    #: counted from boxes): the model ids the modalities it depends on or uses are planned with
    derived_from: tuple[str, ...] = ()
    #: what was left to do and why (blocks waiting for their inputs, damaged blocks marked to redo)
    note: str | None = None
    blocks_todo: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        """Labelling throughput of this run (0 when nothing ran)."""
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


def _context(store: AlignedStore, registry: Registry, options: Mapping[str, Any]) -> LabelContext:
    source = store.root.attrs.get("source", {})
    return LabelContext(
        preset=store.preset,
        image_size=store.image_size,
        source_fields=tuple(source.get("fields", ())),
        options=dict(options),
        modalities={m.name: m.spec for m in registry.modalities()},
    )


@dataclass
class _Check:
    """What planning found for one labeler candidate: unmet requirements, and its teacher's weights if it has one."""

    missing: list[str] = field(default_factory=list)
    model_ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> str | None:
        return ", ".join(self.model_ids) or None

    @property
    def weights(self) -> str | None:
        return ", ".join(dict.fromkeys(self.statuses)) or None


def _hub_model(lab: LabelerSpec, target: str) -> HubModel:
    """The HubModel a ``hub:`` requirement stands for: the labeler's ``model`` option when it names that id (it
    carries the revision and the files to look for), else the id with the default files."""
    declared = lab.options.get("model")
    if isinstance(declared, dict) and declared.get("model_id") == target:
        return HubModel.model_validate(declared)
    return HubModel(model_id=target, library="transformers")


def _factory_check(lab: LabelerSpec, ctx: LabelContext, check: _Check) -> None:
    """A factory, core or plugin, may carry a ``plan_check(context, **options) -> (status, reason, model_id)`` that
    says before any compute whether it can label this store (its weights are there, their width fits the preset), so
    such a mismatch is a skip with its reason in the plan, not a stop when the factory runs. Looking for it imports
    the factory's module, which is why teacher modules import torch inside functions. A model id the ``hub:``
    requirements already reported is not listed twice (its weights status stays the requirement's)."""
    from fourm_core.registry import resolve_ref

    try:
        factory = resolve_ref(lab.factory)
    except (ImportError, AttributeError) as exc:  # a broken plugin module: it cannot run, say why in the plan
        check.missing.append(f"cannot import {lab.factory}: {exc}")
        return
    plan_check = getattr(factory, "plan_check", None)
    if plan_check is None:
        return
    status, reason, model_id = plan_check(ctx, **lab.options)
    if model_id not in check.model_ids:
        check.model_ids.append(model_id)
        check.statuses.append(status)
    if status == "missing":
        check.missing.append(reason)


def _check_labeler(lab: LabelerSpec, ctx: LabelContext, labelled: set[str]) -> _Check:
    check = _Check()
    for req in lab.requires:
        kind, what = req.kind, req.target
        if kind == "source" and what not in ctx.source_fields:
            check.missing.append(f"the source has no {what!r}")
        elif kind == "package" and importlib.util.find_spec(what) is None:
            check.missing.append(f"Python package {what!r} is not installed")
        elif kind == "modality" and what not in labelled:
            check.missing.append(f"modality {what!r} is not labelled")
        elif kind == "env" and not os.environ.get(what):
            check.missing.append(f"environment variable {what} is not set")
        elif kind == "hub":
            status, reason = teacher_status(_hub_model(lab, what), ctx.options)
            check.model_ids.append(what)
            check.statuses.append(status)
            if status == "missing":
                check.missing.append(reason)
    if not check.missing:
        _factory_check(lab, ctx, check)
    return check


def _missing_requirements(lab: LabelerSpec, ctx: LabelContext, labelled: set[str]) -> list[str]:
    """Why ``lab`` cannot run in this store with these options (empty: it can), hub weights included."""
    return _check_labeler(lab, ctx, labelled).missing


def _raw_arrays(spec: ModalitySpec) -> tuple:
    return tuple(a for a in spec.storage if a.form == "raw")


def plan_labeling(
    store: AlignedStore,
    registry: Registry,
    choices: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[ModalityPlan]:
    """Decide, per modality in dependency order, which labeler runs or why the modality is skipped."""
    choices = dict(choices or {})
    ctx = _context(store, registry, options or {})
    labelled = {p.split("/")[0] for p in store.parts() if p.endswith("/raw")}
    plans: list[ModalityPlan] = []
    teachers_of: dict[str, tuple[str, ...]] = {}  # modality -> the model ids its labels come from, directly or not
    for modality in registry.modalities():
        name = modality.name
        if only and name not in only:
            continue
        if not _raw_arrays(modality.spec):
            plans.append(ModalityPlan(name, None, "no raw arrays (its tokens are made by `fourm data tokenize`)"))
            continue
        candidates = modality.labelers()
        named_only = [c.name for c in candidates if c.explicit]
        if name in choices:
            candidates = [c for c in candidates if c.name == choices[name]]
            if not candidates:
                known = ", ".join(c.name for c in modality.labelers()) or "none"
                plans.append(ModalityPlan(name, None, f"no labeler named {choices[name]!r} (known: {known})"))
                continue
        elif candidates and len(named_only) == len(candidates):
            reason = f"its labelers run only when named: --labeler {name}=NAME ({', '.join(named_only)})"
            plans.append(ModalityPlan(name, None, reason))
            continue
        else:  # a stand-in that runs only when named is never picked by itself
            candidates = [c for c in candidates if not c.explicit]
        if not candidates:
            plans.append(ModalityPlan(name, None, "no labeler registered"))
            continue
        reasons, teacher = [], _Check()
        for lab in candidates:
            check = _check_labeler(lab, ctx, labelled)
            if not check.missing:
                inputs = [r.target for r in lab.requires if r.kind == "modality"]
                inputs += [*modality.spec.depends_on, *modality.spec.uses]
                upstream = tuple(dict.fromkeys(m for i in inputs for m in teachers_of.get(i, ())))
                derived = () if check.model_ids else upstream
                plans.append(
                    ModalityPlan(name, lab.name, model_id=check.model_id, weights=check.weights, derived_from=derived)
                )
                teachers_of[name] = tuple(check.model_ids) or upstream
                labelled.add(name)
                break
            reasons.append(f"{lab.name}: {'; '.join(check.missing)}")
            teacher = teacher if teacher.model_ids else check  # the first (default) candidate's teacher
        else:
            reason = "no usable labeler (" + " | ".join(reasons) + ")"
            if named_only and name not in choices:
                reason += f"; stand-ins that run only when named: {', '.join(named_only)} (--labeler {name}=NAME)"
            plans.append(ModalityPlan(name, None, reason, model_id=teacher.model_id, weights=teacher.weights))
    return plans


# ------------------------------------------------------------------------------------------------------------------
# block work, shared by the in-process path and worker processes
# ------------------------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _labeler_for(store_path: StoreLocation, modality: str, labeler: str, options: Mapping[str, Any]) -> tuple[Any, Any]:
    """(store, labeler) for this process, built once and cached (models load once per worker)."""
    key = (store_path, modality, labeler)
    if _WORKER.get("key") != key:
        registry = _WORKER.get("registry") or Registry()
        store = AlignedStore.open(store_path)
        spec = registry.get(modality).spec
        lab = next(lab for lab in registry.labelers(modality) if lab.name == labeler)
        instance = build_labeler(lab, spec, _context(store, registry, options))
        _WORKER.update(key=key, registry=registry, store=store, labeler=instance)
    return _WORKER["store"], _WORKER["labeler"]


def _written(store: AlignedStore, part: str, block: int) -> bool:
    state = store.block_state(part, block)
    return bool(((state == DONE) | (state == FAILED)).all())


def _label_block(
    store_path: StoreLocation, modality: str, labeler: str, deps: Sequence[str], options: Mapping[str, Any], block: int
) -> tuple[int, int, int]:
    """Label one block and write it; returns (block, done, failed). A block another run wrote meanwhile, or whose
    inputs are not all written (or lost a file), is left as it is: (block, 0, 0)."""
    store, instance = _labeler_for(store_path, modality, labeler, options)
    with store.claim(raw_part(modality), block) as todo:
        inputs = [SOURCE_PART, *(raw_part(d) for d in deps)]
        if not todo or not all(_written(store, part, block) for part in inputs):
            return block, 0, 0
        try:
            source_rows = store.read_block(SOURCE_PART, block)
            dep_rows = {d: store.read_block(raw_part(d), block) for d in deps}
        except BlockDamagedError:
            return block, 0, 0
        return _write_labels(store, instance, modality, block, source_rows, dep_rows)


def _write_labels(
    store: AlignedStore,
    instance: Any,
    modality: str,
    block: int,
    source_rows: list[dict[str, Any] | None],
    dep_rows: dict[str, list[dict[str, Any] | None]],
) -> tuple[int, int, int]:
    deps = list(dep_rows)
    indices = list(store.block_range(block))
    values: list[dict[str, Any] | None] = [None] * len(indices)
    errors: dict[int, str] = {}
    views, positions = [], []
    for i, index in enumerate(indices):
        if source_rows[i] is None:
            errors[index] = "the source sample is missing or failed"
            continue
        views.append(SampleView(index, source_rows[i], {d: dep_rows[d][i] for d in deps}))
        positions.append(i)
    for i, result in zip(positions, label_many(instance, views)):
        if isinstance(result, LabelError):
            errors[indices[i]] = str(result)
        else:
            values[i] = result
    store.write_block(raw_part(modality), block, values, errors)
    state = store.block_state(raw_part(modality), block)
    return block, int((state == DONE).sum()), len(indices) - int((state == DONE).sum())


def _note(repaired: Sequence[BlockDamagedError], waiting: Sequence[int], inputs: Sequence[str]) -> str | None:
    """What the user should know about blocks this run did not (or had to re-) label."""
    notes = [f"redone: {d}" for d in repaired[:3]]
    if len(repaired) > 3:
        notes.append(f"and {len(repaired) - 3} more damaged blocks redone")
    if waiting:
        notes.append(
            f"{len(waiting)} blocks wait for their inputs ({', '.join(inputs)}) to be written, first: block "
            f"{waiting[0]}; write them, then rerun"
        )
    return "; ".join(notes) or None


def label_store(
    path: str | Path | StoreLocation,
    *,
    registry: Registry | None = None,
    choices: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
    workers: int = 1,
    options: Mapping[str, Any] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_plan: Callable[[ModalityPlan], None] | None = None,
    shard: Shard | str | tuple[int, int] | None = None,
) -> list[ModalityPlan]:
    """Label every modality of the store at ``path`` (a folder, an fsspec URL or a
    :class:`~fourm_core.storage.location.StoreLocation` with storage options) that still has work; returns what was
    done per modality.

    ``on_plan`` is called when a modality starts (or is skipped); ``on_progress(modality, blocks_done, blocks)``
    after each block. ``workers > 1`` labels blocks in that many spawned processes. ``shard`` (``"I/N"``, ``(I, N)``
    or a :class:`~fourm_core.storage.shards.Shard`) limits the run to that shard's blocks.
    """
    shard = as_shard(shard)
    registry = registry or Registry()
    options = dict(options or {})
    store = AlignedStore.open(path)
    require_manifest(store, registry)
    ctx = _context(store, registry, options)
    checked: set[str] = set()  # parts whose written blocks were checked for lost files in this run
    plans = plan_labeling(store, registry, choices, only, options)
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        for plan in plans:
            if plan.labeler is None:
                if on_plan:
                    on_plan(plan)
                continue
            modality = registry.get(plan.name)
            lab = next(lab for lab in registry.labelers(plan.name) if lab.name == plan.labeler)
            try:
                instance = build_labeler(lab, modality.spec, ctx)
            except TeacherUnavailable as exc:  # planned as downloadable, but the download failed: skip, go on
                plan.labeler, plan.skip_reason, plan.weights = None, str(exc), "missing"
                if on_plan:
                    on_plan(plan)
                continue
            provenance = {
                "labeler": lab.name,
                "distribution": modality.plugin.label,
                "version": instance.version,
                **instance.provenance(),
            }
            provenance["config_hash"] = config_hash(
                lab.name,
                instance.version,
                {k: v for k, v in provenance.items() if k not in RUNTIME_PROVENANCE},
                store.preset,
                sorted((k, v) for k, v in options.items() if k not in RUNTIME_OPTIONS),
            )
            store.ensure(raw_part(plan.name), _raw_arrays(modality.spec), instance.dims(), provenance)
            plan.provenance = provenance
            present = {p.split("/")[0] for p in store.parts() if p.endswith("/raw")}
            deps = [d for d in (*modality.spec.depends_on, *modality.spec.uses) if d in present]
            inputs = [SOURCE_PART, *(raw_part(d) for d in deps)]
            repaired = [
                d
                for part in (*inputs, raw_part(plan.name))
                if part not in checked
                for d in repair_blocks(store, part, shard)
            ]
            checked.update((*inputs, raw_part(plan.name)))
            todo = shard.blocks(store.todo_blocks(raw_part(plan.name)))
            waiting = [b for b in todo if not all(_written(store, part, b) for part in inputs)]
            todo = [b for b in todo if b not in waiting]
            plan.note = _note(repaired, waiting, inputs)
            plan.blocks_todo = len(todo)
            if on_plan:
                on_plan(plan)
            start = time.perf_counter()
            if pool is None:
                _WORKER.update(
                    key=(store.location, plan.name, plan.labeler), registry=registry, store=store, labeler=instance
                )
                results = (_label_block(store.location, plan.name, plan.labeler, deps, options, b) for b in todo)
                for n, (_, done, failed) in enumerate(results, 1):
                    plan.done, plan.failed = plan.done + done, plan.failed + failed
                    if on_progress:
                        on_progress(plan.name, n, len(todo))
            else:
                futures = [
                    pool.submit(_label_block, store.location, plan.name, plan.labeler, deps, options, b) for b in todo
                ]
                for n, future in enumerate(as_completed(futures), 1):
                    _, done, failed = future.result()
                    plan.done, plan.failed = plan.done + done, plan.failed + failed
                    if on_progress:
                        on_progress(plan.name, n, len(todo))
            plan.seconds = time.perf_counter() - start
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        _WORKER.clear()
    return plans
