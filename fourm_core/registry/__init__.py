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

The package is split along its seams: :mod:`~fourm_core.registry.discovery` (entry points, pluggy, the contract
version gate, problems as data), :mod:`~fourm_core.registry.validation` (keys, groups, dependency order, labeler
requirements) and :mod:`~fourm_core.registry.facade` (:class:`Registry` and :class:`Modality`). This module keeps the
process-wide default registry and the names every caller imports.
"""

from __future__ import annotations

from fourm_core.keys import ID_SPACE, modality_id
from fourm_core.registry.discovery import (
    CONTRACT_ATTRIBUTE,
    CONTRACT_VERSION,
    ENTRY_POINT_GROUP,
    SUPPORTED_CONTRACTS,
    PluginError,
    PluginRecord,
    Problem,
    resolve_ref,
)
from fourm_core.registry.facade import Modality, Registry

__all__ = [
    "CONTRACT_ATTRIBUTE",
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "ID_SPACE",
    "SUPPORTED_CONTRACTS",
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
