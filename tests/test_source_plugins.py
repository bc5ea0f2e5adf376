"""A third-party source plugin adds a dataset format of its own, and ``fourm data`` ingests it end to end.

The plugin here is a real distribution: a package plus a ``*.dist-info`` with ``entry_points.txt`` in a folder put on
``PYTHONPATH``, exactly what pip leaves behind. Its format is a JSON-lines file of small RGB arrays and captions; the
``fourm`` command line runs in a subprocess, so discovery goes through ``importlib.metadata`` as for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fourm_core.apps.cli.main import main
from fourm_core.registry import ENTRY_POINT_GROUP, Registry
from fourm_core.sources.protocol import Source, SourceError, SourceSettings, build_source
from fourm_core.storage.store import AlignedStore
from helpers import EXAMPLE_PLUGIN

PLUGIN = '''
"""Registers the rgb_jsonl source."""
from fourm_core.plugin import SourceSpec, hookimpl


@hookimpl
def fourm_register_sources(register):
    register(SourceSpec(name="rgb_jsonl", factory="fourm_jsonl.source:JsonlSource.from_settings",
                        provides=("rgb", "caption"), description="JSON lines of RGB arrays and captions"))
'''

SOURCE = '''
"""One sample per line: {"pixels": HxWx3 nested lists of 0..255, "text": "..."}."""
import json
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from fourm_core.plugin import ArraySpec


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    caption_field: str = "text"


@dataclass
class JsonlSource:
    path: str
    image_size: int
    caption_field: str = "text"
    name: str = "rgb_jsonl"

    @classmethod
    def from_settings(cls, settings):
        options = settings.options_as(Options, cls.name)
        return cls(str(settings.require_location(cls.name)), settings.image_size, options.caption_field)

    def _lines(self):
        with open(self.path) as f:
            return [line for line in f if line.strip()]

    def __len__(self):
        return len(self._lines())

    def arrays(self):
        return (
            ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3), description="pixels"),
            ArraySpec(name="caption", dtype="text", ragged=True, description="caption"),
        )

    def record(self, index):
        row = json.loads(self._lines()[index])
        rgb = np.asarray(row["pixels"], dtype=np.uint8)
        if rgb.shape != (self.image_size, self.image_size, 3):
            raise ValueError(f"line {index + 1}: pixels of shape {rgb.shape}, expected {self.image_size} px")
        return {"rgb": rgb, "caption": row[self.caption_field]}

    def describe(self):
        return {"path": self.path, "image_size": self.image_size, "caption_field": self.caption_field}
'''

SIZE = 8


@pytest.fixture
def jsonl_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Writes distribution ``fourm-jsonl`` (package ``fourm_jsonl``) into a site folder on sys.path and PYTHONPATH."""
    site = tmp_path / "site"
    package = site / "fourm_jsonl"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (package / "source.py").write_text(textwrap.dedent(SOURCE))
    info = site / "fourm_jsonl-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fourm-jsonl\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\njsonl = fourm_jsonl.plugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    yield site
    for name in [m for m in sys.modules if m == "fourm_jsonl" or m.startswith("fourm_jsonl.")]:
        sys.modules.pop(name)


def _dataset(path: Path, rows: int, bad: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(rows)]
    lines = []
    for i, image in enumerate(images):
        pixels = image[:, :4] if i == bad else image  # a sample of the wrong shape fails alone
        lines.append(json.dumps({"pixels": pixels.tolist(), "text": f"picture number {i}"}))
    path.write_text("\n".join(lines) + "\n")
    return images


def _fourm(*argv: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from fourm_core.apps.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )


def test_a_plugin_source_format_is_ingested_by_fourm_data(jsonl_plugin: Path, tmp_path: Path) -> None:
    data = tmp_path / "pictures.jsonl"
    images = _dataset(data, rows=5, bad=3)
    store = tmp_path / "s.zarr"
    args = ("data", "ingest", str(data), "--source", "rgb_jsonl", "--image-size", str(SIZE), "--block-size", "2")
    result = _fourm(*args, "--out", str(store))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote 4 samples (1 failed)" in result.stdout and "line 4: pixels of shape" in result.stdout

    opened = AlignedStore.open(store, mode="r")
    assert opened.root.attrs["source"]["name"] == "rgb_jsonl"
    assert opened.root.attrs["source"]["fields"] == ["rgb", "caption"]
    for i in (0, 1, 2, 4):
        sample = opened.read("source", i)
        np.testing.assert_array_equal(sample["rgb"], images[i])
        assert sample["caption"] == f"picture number {i}"
    assert 3 in opened.errors("source")

    # the store is an ordinary one: the built-in labelers read the plugin's fields
    assert main(["data", "label", str(store), "--only", "rgb", "caption"]) == 0
    labeled = AlignedStore.open(store, mode="r")
    assert {"rgb/raw", "caption/raw"} <= set(labeled.root.attrs["parts"])
    np.testing.assert_array_equal(next(iter(labeled.read("rgb/raw", 2).values())), images[2])

    listed = _fourm("data", "sources", "--json")
    assert {s["name"] for s in json.loads(listed.stdout)} == {"image_folder", "synthetic_world", "rgb_jsonl"}


def test_a_wrong_source_name_is_one_line_listing_the_known_sources(jsonl_plugin: Path, tmp_path: Path) -> None:
    data = tmp_path / "pictures.jsonl"
    _dataset(data, rows=1)
    result = _fourm("data", "ingest", str(data), "--source", "rgb_jsonlz", "--out", str(tmp_path / "x.zarr"))
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == ["error: no data source 'rgb_jsonlz'; known sources: image_folder, rgb_jsonl, synthetic_world"]
    assert not (tmp_path / "x.zarr").exists()


def test_source_settings_errors_name_the_source(jsonl_plugin: Path, tmp_path: Path) -> None:
    registry = Registry()
    data = tmp_path / "pictures.jsonl"
    _dataset(data, rows=2)
    source = build_source("rgb_jsonl", SourceSettings(location=str(data), image_size=SIZE), registry)
    assert isinstance(source, Source) and len(source) == 2
    with pytest.raises(SourceError, match="'rgb_jsonl' needs a location"):
        build_source("rgb_jsonl", SourceSettings(image_size=SIZE), registry)
    with pytest.raises(SourceError, match="'rgb_jsonl': bad option .*colour"):
        build_source("rgb_jsonl", SourceSettings(location=str(data), image_size=SIZE, options={"colour": 1}), registry)
    with pytest.raises(SourceError, match="'synthetic_world' generates samples: give their number with --n"):
        build_source("synthetic_world", SourceSettings(image_size=SIZE), registry)
    with pytest.raises(SourceError, match="'synthetic_world': image_size is set by its own flag"):
        build_source("synthetic_world", SourceSettings(image_size=SIZE, n=1, options={"image_size": 9}), registry)
    synth = build_source("synthetic_world", SourceSettings(image_size=SIZE, n=2, options={"humans": [1, 2]}), registry)
    assert synth.describe()["options"] == {"humans": [1, 2]} and len(synth) == 2
    with pytest.raises(SourceError, match="'synthetic_world': bad option .*humanz"):
        build_source("synthetic_world", SourceSettings(image_size=SIZE, n=1, options={"humanz": [1, 2]}), registry)


def test_builtin_sources_are_a_plugin_that_can_be_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    record = next(r for r in registry.plugins() if r.name == "builtin_sources")
    assert record.distribution == "fourm-core" and record.hooks == ["fourm_register_sources"]
    assert [s.name for s in Registry(disabled=["builtin_sources"]).sources()] == []
