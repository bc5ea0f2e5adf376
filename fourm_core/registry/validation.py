"""Checks across plugins, run once when the registry loads: model keys and groups, ids, dependency order, and what
labelers require. Each check reports through a callback and drops the offenders, so one bad plugin never takes the
others down.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

from fourm_core.keys import modality_id
from fourm_core.registry.discovery import PluginRecord
from fourm_core.spec import PRESETS, LabelerSpec, ModalitySpec, RequirementKind

__all__ = ["GROUP_FIELDS", "Report", "check_keys", "check_requirements", "dependency_order"]

#: Fields that every member of a group must agree on: together they are one model-facing modality.
GROUP_FIELDS = (
    "key",
    "key_has_resolution",
    "kind",
    "embedding",
    "vocabulary",
    "masking",
    "presets",
    "input_only",
    "target_only",
)

Accepted = dict[str, tuple[ModalitySpec, PluginRecord]]


class Report(Protocol):
    """How a check files a problem: ``report(kind, message, records)``."""

    def __call__(self, kind: str, message: str, records: Sequence[PluginRecord] = (), detail: str = "") -> None: ...


def check_keys(accepted: Accepted, report: Report) -> None:
    """Model keys may be shared only inside one declared group; ids must not collide. Offenders are dropped."""
    for preset in PRESETS:
        by_key: dict[str, list[str]] = defaultdict(list)
        for name, (spec, _) in accepted.items():
            by_key[spec.model_key(preset)].append(name)
        for key, names in sorted(by_key.items()):
            if len(names) > 1:
                _check_group(accepted, key, names, report)
        by_id: dict[int, set[str]] = defaultdict(set)
        for spec, _ in accepted.values():
            by_id[modality_id(spec.model_key(preset))].add(spec.model_key(preset))
        for ident, keys in by_id.items():
            if len(keys) > 1:
                owners = [(n, r) for n, (s, r) in accepted.items() if s.model_key(preset) in keys]
                labels = " and ".join(f"{r.label} ({accepted[n][0].model_key(preset)})" for n, r in owners)
                report(
                    "conflict",
                    f"model keys {sorted(keys)} hash to the same id {ident}: {labels}",
                    [r for _, r in owners],
                )
                for n, _ in owners:
                    accepted.pop(n, None)


def _check_group(accepted: Accepted, key: str, names: list[str], report: Report) -> None:
    specs = [accepted[n][0] for n in names]
    groups = {s.group for s in specs}
    records = [accepted[n][1] for n in names]
    if None in groups or len(groups) > 1:
        labels = " and ".join(f"{r.label} ({n})" for n, r in zip(names, records))
        report("conflict", f"model key {key!r} is claimed by {labels} outside one declared group", records)
        for n in names:
            accepted.pop(n, None)
        return
    first = specs[0]
    for other, other_name in zip(specs[1:], names[1:]):
        differing = [f for f in GROUP_FIELDS if getattr(first, f) != getattr(other, f)]
        if differing:
            report(
                "conflict",
                f"group {first.group!r}: {records[0].label} ({names[0]}) and {accepted[other_name][1].label} "
                f"({other_name}) disagree on {', '.join(differing)}",
                [records[0], accepted[other_name][1]],
            )
            for n in names:
                accepted.pop(n, None)
            return


def dependency_order(accepted: Accepted, claimed: set[str], report: Report) -> list[str]:
    """Topological order (dependencies first, ties by name). Missing or cyclic dependencies drop the dependent."""
    available = dict(accepted)
    changed = True
    while changed:  # drop modalities whose hard dependencies are absent, transitively
        changed = False
        for name, (spec, record) in sorted(available.items()):
            missing = [d for d in spec.depends_on if d not in available]
            if missing:
                for dep in missing:
                    why = (
                        "was dropped (see the problems above)"
                        if dep in claimed
                        else "is not provided by any loaded plugin (not installed, blocked or broken)"
                    )
                    report(
                        "dependency",
                        f"modality {name!r} ({record.label}) depends on {dep!r}, which {why}; {name!r} is not loaded",
                        [record],
                    )
                del available[name]
                changed = True
    edges = {n: {d for d in (*s.depends_on, *s.uses) if d in available} for n, (s, _) in available.items()}
    indegree = {n: len(deps) for n, deps in edges.items()}
    dependents: dict[str, list[str]] = defaultdict(list)
    for n, deps in edges.items():
        for d in deps:
            dependents[d].append(n)
    ready = [n for n, k in indegree.items() if k == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for m in dependents[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(ready, m)
    stuck = sorted(set(available) - set(order))
    for name in stuck:
        record = available[name][1]
        cyclic = sorted(d for d in edges[name] if d in stuck)
        report(
            "dependency",
            f"modality {name!r} ({record.label}) is in a dependency cycle with "
            f"{', '.join(repr(c) for c in cyclic)}; not loaded",
            [record],
        )
    return order


def _ordered_before(specs: Mapping[str, ModalitySpec], name: str) -> set[str]:
    """Every modality ``name`` declares (``depends_on`` or ``uses``), transitively: what is labelled before it."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        spec = specs.get(todo.pop())
        for dep in (*spec.depends_on, *spec.uses) if spec else ():
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def check_requirements(
    labeler: LabelerSpec, record: PluginRecord, specs: Mapping[str, ModalitySpec], report: Report
) -> bool:
    """A ``modality:`` requirement must name a modality the labelled one is ordered after (declared in its
    ``depends_on`` or ``uses``, transitively): the runner labels in dependency order, so anything else would be
    missing when the labeler runs, or be a typo. Returns False (and reports) when the labeler must be dropped."""
    before = _ordered_before(specs, labeler.modality)
    wrong = [r.target for r in labeler.requires if r.kind == RequirementKind.MODALITY and r.target not in before]
    if wrong:
        report(
            "requirement",
            f"{record.label}: labeler {labeler.modality}/{labeler.name} requires modality "
            f"{', '.join(map(repr, wrong))}, "
            f"which {labeler.modality!r} neither depends on nor uses (so it would not be labelled first); "
            "the labeler is not registered",
            [record],
        )
        return False
    return True
