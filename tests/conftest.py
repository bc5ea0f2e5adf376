"""Shared fixtures: building real (dist-info based) plugin distributions on the fly.

A "distribution" here is a module plus a ``<name>-<version>.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` on ``sys.path``: exactly what pip leaves behind, so discovery goes through the same
``importlib.metadata`` path as for installed plugins.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path

import pytest

from fourm_core.registry import ENTRY_POINT_GROUP, Registry
from helpers import EXAMPLE_PLUGIN, SPEC_TEMPLATE

#: Tests never download (teachers, tokenizers, models): a hub asset a test needs is built into a temporary hub
#: cache by the test itself. Set before anything imports huggingface_hub (which freezes its constants at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., EntryPoint]]:
    """``make_dist("fourm-thermal", "thermal", code)`` writes module ``fourm_thermal_plugin`` and its dist-info into
    a folder on ``sys.path`` (and ``PYTHONPATH`` for subprocesses) and returns its entry point."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    created: list[str] = []

    def make(dist: str, entry: str, code: str, version: str = "9.9.9") -> EntryPoint:
        module = f"{dist.replace('-', '_')}_plugin"
        (site / f"{module}.py").write_text(SPEC_TEMPLATE + "\n" + textwrap.dedent(code))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry} = {module}\n")
        created.append(module)
        (ep,) = [e for e in PathDistribution(info).entry_points if e.group == ENTRY_POINT_GROUP]
        return ep

    yield make
    for module in created:
        sys.modules.pop(module, None)


@pytest.fixture
def builtin_registry() -> Registry:
    """The 21 built-in modality plugins (the example plugin blocked), non-strict."""
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The installed plugins without the example one, strict as ``FOURM_STRICT_PLUGINS`` says: one per test module,
    which builds its stores and models on it (a module that needs other plugins defines its own)."""
    return Registry(disabled={EXAMPLE_PLUGIN})
