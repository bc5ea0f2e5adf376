"""Resuming an ingest after the photo folder changed.

Before the store recorded its file list, an ingest killed midway and rerun after a photo was added rescanned the
folder: every later photo moved to another index, so the store held keys ``a, c, d, d, e ...`` with two photos
missing, exit 0, verify clean. Now a resume compares the folder with the recorded list and refuses a change with one
line naming it, or with ``--append`` adds new photos as new samples at the end; an index never moves.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.apps.cli.main import main
from fourm_core.sources.adapters import PhotoSource
from fourm_core.storage.source_writer import SOURCE_PART, _write_block, create_source_store
from fourm_core.storage.store import DONE, AlignedStore
from helpers import EXAMPLE_PLUGIN

NAMES = ("a", "c", "d", "e", "f", "g")


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)


def _photo(path: Path, value: int) -> None:
    Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(path)


@pytest.fixture
def half_ingested(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of six photos and a store whose ingest was killed after its first block (two of three blocks to do)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(NAMES):
        _photo(photos / f"{name}.png", 10 * i)
    store_path = tmp_path / "p.zarr"
    adapter = PhotoSource(str(photos), 16)
    store = create_source_store(store_path, adapter, 16, "tiny", block_size=2)
    _write_block(str(store.path), adapter, 0)  # then kill -9
    return photos, store_path


def _ingest(photos: Path, store: Path, *extra: str) -> int:
    args = ["data", "ingest", str(photos), "--image-size", "16", "--block-size", "2", "--out", str(store), *extra]
    return main(args)


def _keys(store: Path) -> list[str]:
    opened = AlignedStore.open(store, mode="r")
    return [row["key"] if row else "" for b in range(opened.n_blocks) for row in opened.read_block(SOURCE_PART, b)]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_photo_added_before_the_resume_is_refused_by_name(
    half_ingested: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, store = half_ingested
    _photo(photos / "b.png", 200)
    capsys.readouterr()
    assert _ingest(photos, store) == 2  # before: 0, keys a, c, d, e, f, g shifted: c twice, b and g missing
    line = _one_error_line(capsys)
    assert "1 added (b.png), 0 removed, 0 changed" in line and "--append" in line
    assert AlignedStore.open(store, mode="r").todo_blocks(SOURCE_PART) == [1, 2]  # nothing written


def test_append_adds_new_photos_at_the_end_and_moves_no_index(
    half_ingested: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    photos, store = half_ingested
    _photo(photos / "b.png", 200)
    _photo(photos / "h.png", 220)
    assert _ingest(photos, store, "--append") == 0
    assert _keys(store) == [*NAMES, "b", "h"]
    opened = AlignedStore.open(store, mode="r")
    assert opened.n_samples == 8 and (opened.state(SOURCE_PART) == DONE).all()
    assert opened.verify() == []
    # b.png holds its own pixels (200), not a neighbour's
    np.testing.assert_array_equal(opened.read(SOURCE_PART, 6)["rgb"], np.full((16, 16, 3), 200, np.uint8))
    # a further resume with nothing new is a no-op, in the recorded (not the scanned) order
    capsys.readouterr()
    assert _ingest(photos, store) == 0
    assert "wrote 0 samples" in capsys.readouterr().out
    assert _keys(store) == [*NAMES, "b", "h"]


@pytest.mark.parametrize("change", ["removed", "changed"])
def test_a_removed_or_changed_photo_is_refused_even_with_append(
    half_ingested: tuple[Path, Path], capsys: pytest.CaptureFixture[str], change: str
) -> None:
    photos, store = half_ingested
    if change == "removed":
        (photos / "e.png").unlink()
    else:
        _photo(photos / "e.png", 99)
        os.utime(photos / "e.png", ns=(1, 1))
    capsys.readouterr()
    assert _ingest(photos, store) == 2  # before: 0, the photos after e moved one index (or e's new pixels mixed in)
    assert f"1 {change} (e.png)" in _one_error_line(capsys)
    assert _ingest(photos, store, "--append") == 2
    assert f"1 {change} (e.png)" in _one_error_line(capsys)


def test_a_recorded_file_list_cannot_point_outside_the_folder(half_ingested: tuple[Path, Path]) -> None:
    from fourm_core.sources.image_folder import ImageFolder

    photos, _ = half_ingested
    with pytest.raises(ValueError, match="not a path inside the folder"):
        ImageFolder(photos, image_size=16, files=["../secret.png"])


@pytest.mark.parametrize("content", ['[["a.png", 1', '{"a.png": 1}'])
def test_a_damaged_recorded_file_list_is_named(
    half_ingested: tuple[Path, Path], capsys: pytest.CaptureFixture[str], content: str
) -> None:
    photos, store = half_ingested
    (store / "source_files.json").write_text(content)
    capsys.readouterr()
    assert _ingest(photos, store) == 2
    assert "source_files.json" in _one_error_line(capsys)
