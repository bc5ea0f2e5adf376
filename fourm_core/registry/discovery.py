"""Finding plugins: entry points, pluggy, the contract-version gate, and calling registration hooks one plugin at a
time so that every failure is data (:class:`Problem`) attributed to a distribution.

Nothing here knows what a modality is; :mod:`fourm_core.registry.facade` builds the registry on top of it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from fourm_core import hookspecs
from fourm_core.hookspecs import CONTRACT_ATTRIBUTE, CONTRACT_VERSION, SUPPORTED_CONTRACTS

__all__ = [
    "CONTRACT_VERSION",
    "CONTRACT_ATTRIBUTE",
    "ENTRY_POINT_GROUP",
    "SUPPORTED_CONTRACTS",
    "PluginError",
    "PluginLoader",
    "PluginRecord",
    "Problem",
    "env_flag",
    "resolve_ref",
]

ENTRY_POINT_GROUP = "fourm.modalities"


class PluginError(RuntimeError):
    """Raised in strict mode, or when code asks for something a broken or missing plugin should have provided."""


@dataclass(frozen=True)
class Problem:
    """One thing that went wrong while loading plugins, kept as data.

    ``kind`` is one of ``load`` (the entry point did not import), ``contract`` (built for a contract version this core
    does not support), ``hook`` (a hook raised or registered something invalid), ``requirement`` (a labeler's
    ``requires`` is malformed or names a modality it is not ordered after), ``conflict`` (two distributions claim one
    name or key), ``dependency`` (missing or cyclic), ``part`` (a part registered for an unknown modality),
    ``config`` (an environment setting names a plugin that is not installed).
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
    contract: int | None = None

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
            "contract": self.contract,
            "hooks": list(self.hooks),
            "blocked": self.blocked,
            "errors": list(self.errors),
        }


#: what an on/off environment switch (``FOURM_STRICT_PLUGINS`` ...) may say, either way
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def env_flag(variable: str) -> bool:
    """An on/off environment switch: 1/true/yes/on or 0/false/no/off (any case, unset = off). Anything else is an
    error naming the variable: ``FOURM_STRICT_PLUGINS=ture`` must not quietly mean "not strict"."""
    value = os.environ.get(variable, "")
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ValueError(
        f"{variable}={value!r} is not an on/off switch: expected one of {', '.join(_TRUE)} (on) or "
        f"{', '.join(v for v in _FALSE if v)} (off)"
    )


def resolve_ref(ref: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr_path = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


class _Collector:
    """Receives ``register(...)`` calls from one plugin and one hook, validating each record.

    ``models`` are the record types the hook accepts (``fourm_register_modalities`` takes a spec or a whole
    declaration); a dict is validated as the first model whose required fields it has.
    """

    def __init__(self, hook: str, models: Sequence[type[BaseModel]]) -> None:
        self.hook, self.models = hook, tuple(models)
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        if isinstance(item, dict):
            model = next(
                (m for m in self.models if all(n in item for n, f in m.model_fields.items() if f.is_required())),
                self.models[0],
            )
            item = model.model_validate(item)
        if not isinstance(item, self.models):
            names = " or ".join(m.__name__ for m in self.models)
            raise TypeError(f"{self.hook}: register() takes a {names}, got {type(item).__name__}")
        self.items.append(item)


class PluginLoader:
    """Loads entry points into a pluggy manager and records every failure as a :class:`Problem`."""

    def __init__(
        self,
        entry_points_: Iterable[EntryPoint] | None,
        disabled: Iterable[str] | None,
        strict: bool | None,
        trace: bool | None,
        extra_plugins: Sequence[tuple[str, object]],
    ) -> None:
        from_env = disabled is None
        env_disabled = os.environ.get("FOURM_DISABLE_PLUGINS", "")
        names = env_disabled.split(",") if disabled is None else disabled
        self.disabled = {d.strip() for d in names if d.strip()}
        self.strict = strict if strict is not None else env_flag("FOURM_STRICT_PLUGINS")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.trace = trace if trace is not None else env_flag("FOURM_TRACE_PLUGINS")
        if self.trace:
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        self.problems: list[Problem] = []
        self._records: dict[str, PluginRecord] = {}
        self._by_object: dict[int, PluginRecord] = {}
        eps = list(entry_points_) if entry_points_ is not None else list(entry_points(group=ENTRY_POINT_GROUP))
        for ep in sorted(eps, key=lambda e: e.name):
            self._load_entry_point(ep)
        for name, obj in extra_plugins:
            module = getattr(obj, "__name__", type(obj).__name__)
            self._register_object(PluginRecord(name, name, "0+local", module), obj)
        if from_env:
            self._check_disabled_names()

    def _check_disabled_names(self) -> None:
        """A name in ``FOURM_DISABLE_PLUGINS`` that matches no plugin disables nothing: a typo that would leave the
        plugin the user meant to turn off running. Reported as a ``config`` problem naming the known plugins.

        The variable speaks of the installed plugins, so its names are checked against every installed entry point of
        the group (and this registry's own), not only the subset a registry built from explicit entry points loads."""
        installed = list(entry_points(group=ENTRY_POINT_GROUP))
        names = {ep.name for ep in installed} | {r.name for r in self._records.values()}
        distributions = {ep.dist.name for ep in installed if ep.dist is not None}
        known = names | distributions | {r.distribution for r in self._records.values()}
        for name in sorted(self.disabled - known):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self._problem(
                "config",
                f"FOURM_DISABLE_PLUGINS names {name!r}, which is no installed plugin{hint}; known plugins: "
                + ", ".join(sorted(names)),
            )

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

    def _contract_ok(self, record: PluginRecord, obj: object) -> bool:
        """A plugin built for a contract this core does not implement is refused (its hooks are never called), so
        it cannot half-work; one that declares none is taken as written for the current contract."""
        declared = getattr(obj, CONTRACT_ATTRIBUTE, None)
        if declared is None:
            return True
        if not isinstance(declared, int) or isinstance(declared, bool):
            self._problem("contract", f"{record.label}: {CONTRACT_ATTRIBUTE} = {declared!r} is not an int", [record])
            return False
        record.contract = declared
        if declared not in SUPPORTED_CONTRACTS:
            supported = ", ".join(map(str, sorted(SUPPORTED_CONTRACTS)))
            self._problem(
                "contract",
                f"{record.label} was built for plugin contract {declared}; this fourm-core implements contract "
                f"{CONTRACT_VERSION} (supports {supported}); the plugin is not loaded (upgrade it or fourm-core)",
                [record],
            )
            return False
        return True

    def _register_object(self, record: PluginRecord, obj: object) -> None:
        self._records.setdefault(record.name, record)
        if not self._contract_ok(record, obj):
            return
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

    def _each_impl(self, hook_name: str, *models: type[BaseModel]) -> Iterator[tuple[PluginRecord, list[Any]]]:
        """Call one registration hook plugin by plugin, so a failure is attributed to its distribution."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in sorted(caller.get_hookimpls(), key=lambda i: i.plugin_name):
            record = self._by_object.get(id(impl.plugin)) or self._records[impl.plugin_name]
            collector = _Collector(hook_name, models)
            try:
                impl.function(register=collector)
            except ValidationError as exc:
                kind = "requirement" if any("requires" in err["loc"] for err in exc.errors()) else "hook"
                self._problem(kind, f"{record.label}: {hook_name} registered an invalid {exc.title}: {exc}", [record])
                continue
            except Exception as exc:
                self._problem("hook", f"{record.label}: {hook_name} raised {exc!r}", [record], traceback.format_exc())
                continue
            if self.trace:
                names = ", ".join(str(getattr(i, "name", None) or getattr(i, "modality", "?")) for i in collector.items)
                print(f"fourm trace: {hook_name} <- {record.label}: [{names}]", file=sys.stderr)
            yield record, collector.items
