"""Plugin discovery and the typed facade the rest of fourm uses instead of ``pm.hook.*``.

Discovery goes through one entry point group, ``fourm.modalities``, for built-in and third-party plugins alike. Every
failure is kept as data (:class:`Problem`, with distribution name and version) so ``fourm plugins`` can show it and the
other plugins keep working; ``FOURM_STRICT_PLUGINS=1`` turns any problem into an exception (CI sets it).

Environment switches:

* ``FOURM_DISABLE_PLUGINS``: comma-separated entry point or distribution names to block (``albedo,fourm-det``).
* ``FOURM_STRICT_PLUGINS=1``: raise :class:`PluginError` on the first load with problems.
* ``FOURM_TRACE_PLUGINS=1``: print every hook call (pluggy's tracer) to stderr.

Usage::

    from fourm_core import registry
    depth = registry.get("depth")
    depth.model_key("paper"), depth.id("paper"), [m.name for m in registry.modalities()]
"""

from __future__ import annotations

import difflib
import hashlib
import heapq
import importlib
import os
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from fourm_core import hookspecs
from fourm_core.spec import (
    PRESETS,
    DecoderSpec,
    LabelerSpec,
    MaskingUnit,
    ModalitySpec,
    SerializerSpec,
    SourceSpec,
    TokenizerSpec,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Modality",
    "PluginError",
    "PluginRecord",
    "Problem",
    "Registry",
    "get",
    "get_registry",
    "modalities",
    "modality_id",
    "plugins",
    "problems",
    "reset",
    "resolve_ref",
]

ENTRY_POINT_GROUP = "fourm.modalities"
#: Model-facing modality ids are 15-bit, stored in int16 ``mod_mask`` tensors (ml-4m's convention).
ID_SPACE = 2**15
#: Fields that every member of a group must agree on: together they are one model-facing modality.
_GROUP_FIELDS = (
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


class PluginError(RuntimeError):
    """Raised in strict mode, or when code asks for something a broken or missing plugin should have provided."""


@dataclass(frozen=True)
class Problem:
    """One thing that went wrong while loading plugins, kept as data.

    ``kind`` is one of ``load`` (the entry point did not import), ``hook`` (a hook raised or registered something
    invalid), ``conflict`` (two distributions claim one name or key), ``dependency`` (missing or cyclic), ``part``
    (a part registered for an unknown modality).
    """

    kind: str
    message: str
    plugins: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class PluginRecord:
    """What ``fourm plugins`` shows for one entry point."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    blocked: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``fourm-depth 0.1.0`` style name used in every error message."""
        return f"{self.distribution} {self.version}"

    @property
    def ok(self) -> bool:
        """Loaded, not blocked, and every hook ran."""
        return not self.blocked and not self.errors

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``fourm plugins --json``."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "blocked": self.blocked,
            "errors": list(self.errors),
        }


def modality_id(model_key: str) -> int:
    """Stable id of a model key: ``sha256(key) % 2**15``, identical to ml-4m's ``generate_uint15_hash``.

    Derived from the key alone, so installing or removing other plugins never changes it.
    """
    return int(hashlib.sha256(model_key.encode("utf-8")).hexdigest(), 16) % ID_SPACE


def resolve_ref(ref: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True, eq=False)
class Modality:
    """A registered modality: its validated spec, who provides it, and lazy access to its parts."""

    spec: ModalitySpec
    plugin: PluginRecord
    registry: Registry = field(repr=False)

    @property
    def name(self) -> str:
        """Plugin-level name, e.g. ``depth``."""
        return self.spec.name

    def model_key(self, preset: str = "paper") -> str:
        """ml-4m model key in ``preset`` (``tok_depth@224``)."""
        return self.spec.model_key(preset)

    def id(self, preset: str = "paper") -> int:
        """Stable model-facing id (shared by the members of a group, since they share the key)."""
        return modality_id(self.model_key(preset))

    def group_members(self) -> list[Modality]:
        """All modalities sharing this one's model key (itself included), in registry order."""
        if self.spec.group is None:
            return [self]
        return [m for m in self.registry.modalities() if m.spec.group == self.spec.group]

    def labelers(self) -> list[LabelerSpec]:
        """Labeler candidates from every plugin, default first."""
        return self.registry.labelers(self.name)

    def serializer(self) -> Any:
        """The sequence codec object (imported on first use)."""
        return self.registry.serializer(self.name)

    def tokenizer(self, preset: str = "tiny", directory: str | os.PathLike | None = None) -> Any:
        """The tokenizer for ``preset`` (imported on first use), trained weights from ``directory`` when given."""
        return self.registry.tokenizer(self.name, preset, directory)

    def decoder(self, name: str | None = None) -> Any:
        """A decoder object (imported on first use)."""
        return self.registry.decoder(self.name, name)


class _Collector:
    """Receives ``register(...)`` calls from one plugin and one hook, validating each record."""

    def __init__(self, registry: Registry, plugin: PluginRecord, hook: str, model: type[BaseModel]) -> None:
        self.registry, self.plugin, self.hook, self.model = registry, plugin, hook, model
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        if isinstance(item, dict):
            item = self.model.model_validate(item)
        if not isinstance(item, self.model):
            raise TypeError(f"{self.hook}: register() takes a {self.model.__name__}, got {type(item).__name__}")
        self.items.append(item)


class Registry:
    """Loads plugins once and answers every question the core asks about modalities.

    Parameters are for tests and embedding; by default they come from the environment and the installed
    distributions. ``extra_plugins`` registers in-process plugin objects (``(name, object)``) as if they had entry
    points, which the pytest fixtures use.
    """

    def __init__(
        self,
        entry_points_: Iterable[EntryPoint] | None = None,
        *,
        disabled: Iterable[str] | None = None,
        strict: bool | None = None,
        trace: bool | None = None,
        extra_plugins: Sequence[tuple[str, object]] = (),
    ) -> None:
        env_disabled = os.environ.get("FOURM_DISABLE_PLUGINS", "")
        self.disabled = {d.strip() for d in (disabled if disabled is not None else env_disabled.split(",")) if d}
        self.strict = strict if strict is not None else os.environ.get("FOURM_STRICT_PLUGINS", "") in ("1", "true")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.trace = trace if trace is not None else os.environ.get("FOURM_TRACE_PLUGINS", "") in ("1", "true")
        if self.trace:
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        self.problems: list[Problem] = []
        self._records: dict[str, PluginRecord] = {}
        self._by_object: dict[int, PluginRecord] = {}
        self._parts_cache: dict[tuple[str, ...], Any] = {}

        eps = list(entry_points_) if entry_points_ is not None else list(entry_points(group=ENTRY_POINT_GROUP))
        for ep in sorted(eps, key=lambda e: e.name):
            self._load_entry_point(ep)
        for name, obj in extra_plugins:
            module = getattr(obj, "__name__", type(obj).__name__)
            self._register_object(PluginRecord(name, name, "0+local", module), obj)

        self._modalities: dict[str, Modality] = {}
        self._sources: dict[str, tuple[SourceSpec, PluginRecord]] = {}
        self._labelers: dict[str, list[tuple[LabelerSpec, PluginRecord]]] = defaultdict(list)
        self._serializers: dict[str, tuple[SerializerSpec, PluginRecord]] = {}
        self._tokenizers: dict[str, tuple[TokenizerSpec, PluginRecord]] = {}
        self._decoders: dict[str, list[tuple[DecoderSpec, PluginRecord]]] = defaultdict(list)
        self._collect()
        if self.strict and self.problems:
            raise PluginError(
                "plugin problems (FOURM_STRICT_PLUGINS=1):\n" + "\n".join(f"  - {p}" for p in self.problems)
            )

    # ---------------------------------------------------------------------------------------------------------------
    # loading
    # ---------------------------------------------------------------------------------------------------------------

    def _problem(self, kind: str, message: str, records: Sequence[PluginRecord] = (), detail: str = "") -> None:
        self.problems.append(Problem(kind, message, tuple(r.label for r in records), detail))
        for record in records:
            record.errors.append(f"{kind}: {message}")

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        record = PluginRecord(
            name=ep.name,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            module=ep.value,
        )
        if ep.name in self._records:
            other = self._records[ep.name]
            if (other.distribution, other.module) == (record.distribution, record.module):
                return  # the same distribution seen twice (e.g. on sys.path twice): not a conflict
            self._problem(
                "conflict", f"entry point {ep.name!r} is declared by {other.label} and {record.label}", [other, record]
            )
            return
        self._records[ep.name] = record
        if ep.name in self.disabled or record.distribution in self.disabled:
            record.blocked = True
            self.pm.set_blocked(ep.name)
            return
        if self.trace:
            print(f"fourm trace: loading {ep.name} = {ep.value} from {record.label}", file=sys.stderr)
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin is data, whatever it raised
            self._problem(
                "load",
                f"{record.label} (entry point {ep.name!r}) failed to import: {exc!r}",
                [record],
                traceback.format_exc(),
            )
            return
        self._register_object(record, obj)

    def _register_object(self, record: PluginRecord, obj: object) -> None:
        self._records.setdefault(record.name, record)
        try:
            self.pm.register(obj, name=record.name)
        except Exception as exc:  # pluggy.PluginValidationError names plugin, hook and signature
            self._problem("load", f"{record.label}: {exc}", [record])
            return
        self._by_object[id(obj)] = record
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(obj) or ())
        marked = [n for n in dir(obj) if hasattr(getattr(obj, n, None), f"{hookspecs.PROJECT}_impl")]
        unknown = sorted(n for n in marked if not hasattr(hookspecs, n))
        unmarked = sorted(
            n
            for n in dir(obj)
            if n.startswith("fourm_") and hasattr(hookspecs, n) and n not in marked and callable(getattr(obj, n))
        )
        if unknown:
            self._problem("load", f"{record.label} implements unknown hooks {unknown} (misspelled?)", [record])
        if unmarked:
            self._problem(
                "load", f"{record.label} defines {unmarked} without @hookimpl, so they are never called", [record]
            )

    def _each_impl(self, hook_name: str, model: type[BaseModel]) -> Iterable[tuple[PluginRecord, list[Any]]]:
        """Call one registration hook plugin by plugin, so a failure is attributed to its distribution."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
            record = self._by_object.get(id(impl.plugin)) or self._records[impl.plugin_name]
            collector = _Collector(self, record, hook_name, model)
            try:
                impl.function(register=collector)
            except ValidationError as exc:
                self._problem(
                    "hook", f"{record.label}: {hook_name} registered an invalid {model.__name__}: {exc}", [record]
                )
                continue
            except Exception as exc:
                self._problem("hook", f"{record.label}: {hook_name} raised {exc!r}", [record], traceback.format_exc())
                continue
            if self.trace:
                names = ", ".join(
                    getattr(item, "name", None) or getattr(item, "modality", "?") for item in collector.items
                )
                print(f"fourm trace: {hook_name} <- {record.label}: [{names}]", file=sys.stderr)
            yield record, collector.items

    def _collect(self) -> None:
        claims: dict[str, list[tuple[ModalitySpec, PluginRecord]]] = defaultdict(list)
        for record, specs in self._each_impl("fourm_register_modalities", ModalitySpec):
            for spec in specs:
                claims[spec.name].append((spec, record))
        accepted: dict[str, tuple[ModalitySpec, PluginRecord]] = {}
        for name, claimants in claims.items():
            if len(claimants) > 1:
                labels = " and ".join(r.label for _, r in claimants)
                self._problem(
                    "conflict",
                    f"modality {name!r} is claimed by {labels}; neither is loaded",
                    [r for _, r in claimants],
                )
            else:
                accepted[name] = claimants[0]
        self._check_keys(accepted)
        ordered = self._dependency_order(accepted, set(claims))
        self._modalities = {name: Modality(accepted[name][0], accepted[name][1], self) for name in ordered}
        self._collect_parts()

    def _check_keys(self, accepted: dict[str, tuple[ModalitySpec, PluginRecord]]) -> None:
        """Model keys may be shared only inside one declared group; ids must not collide. Offenders are dropped."""
        for preset in PRESETS:
            by_key: dict[str, list[str]] = defaultdict(list)
            for name, (spec, _) in accepted.items():
                by_key[spec.model_key(preset)].append(name)
            for key, names in sorted(by_key.items()):
                if len(names) < 2:
                    continue
                specs = [accepted[n][0] for n in names]
                groups = {s.group for s in specs}
                records = [accepted[n][1] for n in names]
                if None in groups or len(groups) > 1:
                    labels = " and ".join(f"{r.label} ({n})" for n, r in zip(names, records))
                    self._problem(
                        "conflict", f"model key {key!r} is claimed by {labels} outside one declared group", records
                    )
                    for n in names:
                        accepted.pop(n, None)
                    continue
                first = specs[0]
                for other, other_name in zip(specs[1:], names[1:]):
                    differing = [f for f in _GROUP_FIELDS if getattr(first, f) != getattr(other, f)]
                    if differing:
                        self._problem(
                            "conflict",
                            f"group {first.group!r}: {accepted[names[0]][1].label} ({names[0]}) and "
                            f"{accepted[other_name][1].label} ({other_name}) disagree on {', '.join(differing)}",
                            [accepted[names[0]][1], accepted[other_name][1]],
                        )
                        for n in names:
                            accepted.pop(n, None)
                        break
            by_id: dict[int, set[str]] = defaultdict(set)
            for spec, _ in accepted.values():
                by_id[modality_id(spec.model_key(preset))].add(spec.model_key(preset))
            for ident, keys in by_id.items():
                if len(keys) > 1:
                    owners = [(n, r) for n, (s, r) in accepted.items() if s.model_key(preset) in keys]
                    labels = " and ".join(f"{r.label} ({accepted[n][0].model_key(preset)})" for n, r in owners)
                    self._problem(
                        "conflict",
                        f"model keys {sorted(keys)} hash to the same id {ident}: {labels}",
                        [r for _, r in owners],
                    )
                    for n, _ in owners:
                        accepted.pop(n, None)

    def _dependency_order(self, accepted: dict[str, tuple[ModalitySpec, PluginRecord]], claimed: set[str]) -> list[str]:
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
                        self._problem(
                            "dependency",
                            f"modality {name!r} ({record.label}) depends on {dep!r}, "
                            f"which {why}; {name!r} is not loaded",
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
            spec, record = available[name]
            cyclic = sorted(d for d in edges[name] if d in stuck)
            self._problem(
                "dependency",
                f"modality {name!r} ({record.label}) is in a dependency cycle with "
                f"{', '.join(repr(c) for c in cyclic)}; not loaded",
                [record],
            )
        return order

    def _collect_parts(self) -> None:
        known = set(self._modalities)

        def check(record: PluginRecord, modality: str, what: str) -> bool:
            if modality in known:
                return True
            self._problem("part", f"{record.label} registers a {what} for unknown modality {modality!r}", [record])
            return False

        for record, sources in self._each_impl("fourm_register_sources", SourceSpec):
            for source in sources:
                if source.name in self._sources:
                    other = self._sources[source.name][1]
                    self._problem(
                        "conflict",
                        f"source {source.name!r} is registered by {other.label} and {record.label}",
                        [other, record],
                    )
                    continue
                self._sources[source.name] = (source, record)
        for record, labelers in self._each_impl("fourm_register_labelers", LabelerSpec):
            for lab in labelers:
                if not check(record, lab.modality, "labeler"):
                    continue
                clash = [r for s, r in self._labelers[lab.modality] if s.name == lab.name]
                if clash:
                    self._problem(
                        "conflict",
                        f"labeler {lab.modality}/{lab.name} is registered by {clash[0].label} and {record.label}",
                        [clash[0], record],
                    )
                    continue
                self._labelers[lab.modality].append((lab, record))
        single = (
            ("fourm_register_serializers", SerializerSpec, self._serializers, "serializer"),
            ("fourm_register_tokenizers", TokenizerSpec, self._tokenizers, "tokenizer"),
        )
        for hook, model, table, what in single:
            for record, parts in self._each_impl(hook, model):
                for part in parts:
                    if not check(record, part.modality, what):
                        continue
                    if part.modality in table:
                        other = table[part.modality][1]
                        self._problem(
                            "conflict",
                            f"{what} for {part.modality!r} is registered by {other.label} and {record.label}",
                            [other, record],
                        )
                        continue
                    table[part.modality] = (part, record)
        for record, decoders in self._each_impl("fourm_register_decoders", DecoderSpec):
            for dec in decoders:
                if check(record, dec.modality, "decoder"):
                    self._decoders[dec.modality].append((dec, record))

    # ---------------------------------------------------------------------------------------------------------------
    # facade
    # ---------------------------------------------------------------------------------------------------------------

    def plugins(self) -> list[PluginRecord]:
        """Every entry point seen, loaded, blocked or broken, by name."""
        return sorted(self._records.values(), key=lambda r: r.name)

    def modalities(self) -> list[Modality]:
        """Loaded modalities in dependency order (dependencies first, ties by name)."""
        return list(self._modalities.values())

    def names(self) -> list[str]:
        """Names of the loaded modalities, in dependency order."""
        return list(self._modalities)

    def get(self, name: str) -> Modality:
        """The modality called ``name``; the error suggests close names and says why it might be missing."""
        try:
            return self._modalities[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._modalities, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            why = [str(p) for p in self.problems if repr(name) in p.message]
            because = f" ({why[0]})" if why else ""
            raise KeyError(f"no modality {name!r} is registered{because}{hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._modalities

    def model_keys(self, preset: str = "paper") -> dict[str, list[Modality]]:
        """Model-facing keys in registry order, each with the modalities (group members) behind it."""
        keys: dict[str, list[Modality]] = {}
        for modality in self._modalities.values():
            keys.setdefault(modality.model_key(preset), []).append(modality)
        return keys

    def sources(self) -> list[SourceSpec]:
        """Registered data sources, by name."""
        return [s for s, _ in sorted(self._sources.values(), key=lambda t: t[0].name)]

    def source(self, name: str) -> SourceSpec:
        """One data source spec by name."""
        if name not in self._sources:
            raise KeyError(f"no data source {name!r}; known: {', '.join(sorted(self._sources)) or 'none'}")
        return self._sources[name][0]

    def labelers(self, modality: str) -> list[LabelerSpec]:
        """Labeler candidates for ``modality``: the modality plugin's default first, then by name."""
        owner = self.get(modality).plugin
        entries = self._labelers.get(modality, [])
        return [s for s, r in sorted(entries, key=lambda t: (not (t[0].default and t[1] is owner), t[0].name))]

    def serializer_spec(self, modality: str) -> SerializerSpec | None:
        """The registered serializer spec of ``modality``, if any (no import)."""
        entry = self._serializers.get(modality)
        return entry[0] if entry else None

    def serializer(self, modality: str) -> Any:
        """Build (once) and return the sequence serializer of ``modality``."""
        spec = self.serializer_spec(modality)
        if spec is None:
            raise PluginError(f"modality {modality!r} has no serializer registered")
        return self._build(("serializer", modality), spec.factory, modality)

    def key_serializer(self, model_key: str, preset: str = "paper") -> Any:
        """The codec of a model-facing sequence key: its plugin's serializer, or, for a group, a
        :class:`~fourm_core.serialization.GroupSerializer` that interleaves every member's chunks."""
        from fourm_core.serialization import GroupSerializer

        members = self.model_keys(preset).get(model_key)
        if not members:
            raise KeyError(f"no modality has the model key {model_key!r} in preset {preset!r}")
        if len(members) == 1:
            return self.serializer(members[0].name)
        cache_key = ("group", model_key, preset)
        if cache_key not in self._parts_cache:
            parts = [(m.name, self.serializer(m.name), m.spec.chunk_tags) for m in members]
            self._parts_cache[cache_key] = GroupSerializer(model_key, parts)
        return self._parts_cache[cache_key]

    def tokenizer_spec(self, modality: str) -> TokenizerSpec | None:
        """The registered tokenizer implementation spec of ``modality``, if any (no import)."""
        entry = self._tokenizers.get(modality)
        return entry[0] if entry else None

    def tokenizer(self, modality: str, preset: str = "tiny", directory: str | os.PathLike | None = None) -> Any:
        """The tokenizer of ``modality``: a plugin-registered implementation when there is one, else the generic
        family the spec declares (``fourm_core.tokenizers``). Trained weights are loaded from ``directory`` (default:
        ``$FOURM_TOKENIZERS`` when set); without weights the tokenizer is untrained (``.trained`` is False)."""
        mspec = self.get(modality).spec
        spec = self.tokenizer_spec(modality)
        if spec is not None:
            return self._build(("tokenizer", modality, preset), spec.factory, modality, mspec, preset)
        declared = mspec.tokenizer
        if declared is None or declared.family == "wordpiece" or declared.transform is None:
            what = f" (declared family: {declared.family})" if declared else ""
            raise PluginError(f"modality {modality!r} has no learned tokenizer{what}")
        directory = directory or os.environ.get("FOURM_TOKENIZERS")
        if directory:
            key = ("tokenizer", modality, preset, str(directory))
            return self._build(key, "fourm_core.tokenizers:load_tokenizer", modality, mspec, directory)
        return self._build(
            ("tokenizer", modality, preset), "fourm_core.tokenizers:build_tokenizer", modality, mspec, preset
        )

    def decoders(self, modality: str) -> list[DecoderSpec]:
        """Decoder specs registered for ``modality``."""
        return [s for s, _ in self._decoders.get(modality, [])]

    def decoder(self, modality: str, name: str | None = None) -> Any:
        """Build (once) a decoder of ``modality`` by name (the first registered when ``name`` is None)."""
        specs = self.decoders(modality)
        chosen = [s for s in specs if name is None or s.name == name]
        if not chosen:
            raise PluginError(f"modality {modality!r} has no decoder{f' named {name!r}' if name else ''}")
        return self._build(("decoder", modality, chosen[0].name), chosen[0].factory, modality)

    def _build(self, cache_key: tuple[str, ...], ref: str, modality: str, *args: Any) -> Any:
        if cache_key not in self._parts_cache:
            try:
                factory = resolve_ref(ref)
                self._parts_cache[cache_key] = factory(*args)
            except Exception as exc:
                owner = self._modalities[modality].plugin.label if modality in self._modalities else "?"
                raise PluginError(f"{cache_key[0]} of {modality!r} ({owner}) from {ref!r} failed: {exc!r}") from exc
        return self._parts_cache[cache_key]

    def masking_chunks(self, modality: str, sequence: str) -> list[str]:
        """Atomic chunks of a chunk-masked sequence: a plugin's ``fourm_masking_chunks`` answer, else split before
        every ``chunk_tags`` token of the modality's group members."""
        mod = self.get(modality)
        if mod.spec.masking != MaskingUnit.CHUNK:
            raise ValueError(f"modality {modality!r} is masked by {mod.spec.masking.value}, not by chunks")
        answer = self.pm.hook.fourm_masking_chunks(modality=mod.spec, sequence=sequence)
        if answer is not None:
            return list(answer)
        tags = {t for member in mod.group_members() for t in member.spec.chunk_tags}
        chunks: list[list[str]] = []
        for token in sequence.split():
            if token in tags or not chunks:
                chunks.append([token])
            else:
                chunks[-1].append(token)
        return [" ".join(c) for c in chunks]

    def check(self) -> None:
        """Raise :class:`PluginError` listing every problem, if there is any."""
        if self.problems:
            raise PluginError("plugin problems:\n" + "\n".join(f"  - {p}" for p in self.problems))


# ------------------------------------------------------------------------------------------------------------------
# module-level default registry: ``from fourm_core import registry; registry.get("depth")``
# ------------------------------------------------------------------------------------------------------------------

_DEFAULT: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry()
    return _DEFAULT


def reset() -> None:
    """Forget the process-wide registry (after changing environment switches or installing a plugin)."""
    global _DEFAULT
    _DEFAULT = None


def modalities() -> list[Modality]:
    """Loaded modalities of the default registry, dependencies first."""
    return get_registry().modalities()


def get(name: str) -> Modality:
    """One modality of the default registry by name."""
    return get_registry().get(name)


def plugins() -> list[PluginRecord]:
    """Plugin records of the default registry."""
    return get_registry().plugins()


def problems() -> list[Problem]:
    """Load problems of the default registry."""
    return get_registry().problems
