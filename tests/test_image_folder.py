"""Photo ingestion: real sample photos load with their sizes; every kind of bad file is converted or rejected
with a message naming it, and the rest of the folder goes on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.sources.image_folder import ImageFolder, IngestError, load_photo

skdata = pytest.importorskip("skimage.data")


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kw) -> Path:
    Image.fromarray(array, mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    _save(d / "astronaut.jpg", skdata.astronaut(), quality=90)
    _save(d / "coffee.png", skdata.coffee())
    _save(d / "sub" / "chelsea.jpg", skdata.chelsea())
    _save(d / "rocket.jpg", skdata.rocket())
    (d / "astronaut.txt").write_text("  an astronaut in front of a flag \n")
    (d / "empty.jpg").write_bytes(b"")
    good = io.BytesIO()
    Image.fromarray(skdata.coffee()).save(good, format="JPEG")
    (d / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (d / "notes.png").write_text("this is text, not a picture")
    _save(d / "tiny.png", np.zeros((3, 2, 3), np.uint8))
    return d


def test_good_photos_load_and_bad_files_are_named(folder: Path) -> None:
    photos = ImageFolder(folder, image_size=32)
    results = list(photos.iter(skip_errors=True))
    good = {r.key: r for r in results if not isinstance(r, IngestError)}
    bad = {Path(e.path).name: e.reason for e in results if isinstance(e, IngestError)}
    assert set(good) == {"astronaut", "coffee", "rocket", "sub/chelsea"}
    assert good["astronaut"].original_size == (512, 512) and good["coffee"].original_size == (600, 400)
    assert good["sub/chelsea"].original_size == (451, 300)
    assert good["astronaut"].caption == "an astronaut in front of a flag" and good["coffee"].caption is None
    assert all(r.rgb.shape == (32, 32, 3) and r.rgb.dtype == np.uint8 for r in good.values())
    assert set(bad) == {"empty.jpg", "truncated.jpg", "notes.png", "tiny.png"}
    assert "empty file" in bad["empty.jpg"] and "truncated or corrupt" in bad["truncated.jpg"]
    assert "not an image" in bad["notes.png"] and "too small: 2x3, minimum 8 px" in bad["tiny.png"]
    with pytest.raises(IngestError, match=r"empty\.jpg: empty file"):
        photos[[p.name for p in photos.files].index("empty.jpg")]


def test_centre_crop_matches_a_reference_resize(tmp_path: Path) -> None:
    image = skdata.coffee()  # 400 x 600
    rec = load_photo(_save(tmp_path / "c.png", image), 40)
    reference = Image.fromarray(image[:, 100:500]).resize((40, 40), Image.Resampling.LANCZOS)
    assert np.abs(rec.rgb.astype(int) - np.asarray(reference, int)).mean() < 2
    padded = load_photo(tmp_path / "c.png", 40, crop="pad")
    assert padded.rgb[:4].max() <= 3 and padded.rgb[20].max() > 0  # letterboxed (6.7 px bands), whole image kept


def test_modes_are_converted_with_notes(tmp_path: Path) -> None:
    ramp16 = (np.tile(np.linspace(0, 65535, 64), (64, 1))).astype(np.uint16)
    rec = load_photo(_save(tmp_path / "g16.png", ramp16), 16)
    assert "16-bit grey scaled to 8 bits" in rec.notes
    row = rec.rgb[8, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[0] < 10 and row[-1] > 245
    grey = load_photo(_save(tmp_path / "g.png", np.full((20, 20), 100, np.uint8)), 16)
    assert "grayscale expanded to RGB" in grey.notes and (grey.rgb == 100).all()
    rgba = np.zeros((20, 20, 4), np.uint8)
    alpha = load_photo(_save(tmp_path / "a.png", rgba), 16)
    assert "alpha composited on white" in alpha.notes and (alpha.rgb == 255).all()
    red = np.zeros((20, 20, 3), np.uint8)
    red[..., 0] = 200
    Image.fromarray(red).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cmyk = load_photo(tmp_path / "cmyk.jpg", 16)
    assert "converted CMYK to RGB" in cmyk.notes
    assert cmyk.rgb[..., 0].mean() > 150 and cmyk.rgb[..., 1].mean() < 60


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = 255  # left half white
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    rec = load_photo(tmp_path / "r.jpg", 16, crop="pad")
    assert rec.original_size == (40, 20) and "EXIF orientation applied" in rec.notes
    assert rec.rgb[2, 8].mean() > 200 and rec.rgb[13, 8].mean() < 50  # white half is now on top


def test_huge_images_are_refused_before_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (5000, 4000)).save(big)  # compresses to a few kB
    with pytest.raises(IngestError, match=r"too large: 5000x4000 is over 1000000 pixels"):
        load_photo(big, 32, max_pixels=1_000_000)
