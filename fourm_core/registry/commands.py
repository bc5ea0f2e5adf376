"""Plugin commands: collecting ``fourm_register_commands`` records, one name per command.

The registry loads plugins; this module asks them for :class:`~fourm_core.spec.CommandSpec` records (nothing is
imported: the factory is a reference) and settles names. Two plugins claiming one name are a ``conflict`` problem
naming both distributions, and neither command is added, as for modalities. Whether a name clashes with a core
command, and whether a factory imports, only the command line knows: :func:`fourm_core.apps.cli.main.build_parser`
reports those through :func:`report_command_problem`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fourm_core.registry.discovery import PluginError, PluginRecord
from fourm_core.spec import CommandSpec

if TYPE_CHECKING:
    from fourm_core.registry.facade import Registry

__all__ = ["PluginCommand", "collect_commands", "report_command_problem"]


@dataclass(frozen=True)
class PluginCommand:
    """A command a plugin adds, with the plugin that adds it (for error messages)."""

    spec: CommandSpec
    plugin: PluginRecord

    @property
    def name(self) -> str:
        """The command's name on the command line."""
        return self.spec.name


def collect_commands(registry: Registry) -> list[PluginCommand]:
    """Every plugin command with a name of its own, by name; invalid records and name conflicts become problems of
    ``registry`` (raised at once when it is strict)."""
    before = len(registry.problems)
    claims: dict[str, list[PluginCommand]] = defaultdict(list)
    for record, specs in registry._each_impl("fourm_register_commands", CommandSpec):
        for spec in specs:
            claims[spec.name].append(PluginCommand(spec, record))
    commands = []
    for name, claimants in sorted(claims.items()):
        if len(claimants) > 1:
            labels = " and ".join(c.plugin.label for c in claimants)
            registry._problem(
                "conflict",
                f"command {name!r} is registered by {labels}; neither is added",
                [c.plugin for c in claimants],
            )
        else:
            commands.append(claimants[0])
    _raise_if_strict(registry, before)
    return commands


def report_command_problem(registry: Registry, command: PluginCommand, kind: str, message: str) -> None:
    """Record a problem the command line found with ``command`` (a clash with a core command, a broken factory)."""
    before = len(registry.problems)
    registry._problem(kind, f"{command.plugin.label}: command {command.name!r} {message}", [command.plugin])
    _raise_if_strict(registry, before)


def _raise_if_strict(registry: Registry, before: int) -> None:
    new = registry.problems[before:]
    if registry.strict and new:
        raise PluginError("plugin problems (FOURM_STRICT_PLUGINS=1):\n" + "\n".join(f"  - {p}" for p in new))
