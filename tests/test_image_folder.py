"""Photo ingestion: real photos load with their true sizes and a faithful resize; every kind of bad file is either
converted (with a note) or rejected alone, by name, while the rest of the folder goes on.

Every file is made in ``tmp_path``; the one "huge" file is a hand-written PNG header that claims huge dimensions, so
refusing it proves that nothing was decoded (there is nothing to decode).
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from fourm_core.sources import photo_pixels
from fourm_core.sources.image_folder import ImageFolder, ImageFolderConfig, IngestError, PhotoRecord, load_photo

# ---------------------------------------------------------------------------------------------------------------------
# file makers
# ---------------------------------------------------------------------------------------------------------------------


def _save(path: Path, image: np.ndarray | Image.Image, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kw)
    return path


def _truncated(path: Path, image: np.ndarray, fmt: str) -> Path:
    """A real file cut in half, as left by an interrupted copy."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` RGB but holds almost no data: "huge" at no cost."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _with_orientation(path: Path, array: np.ndarray, orientation: int, **kw: object) -> Path:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    return _save(path, image, exif=exif, **kw)


def _patches() -> np.ndarray:
    """Three flat colour patches (red, green, blue) side by side, 16 x 48."""
    array = np.zeros((16, 48, 3), np.uint8)
    array[:, :16], array[:, 16:32], array[:, 32:] = (220, 30, 30), (30, 200, 40), (20, 40, 210)
    return array


@pytest.fixture(autouse=True)
def _pillow_must_not_accept_truncated_files() -> None:
    """The guarantee the whole module rests on, checked around every test."""
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    yield
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ---------------------------------------------------------------------------------------------------------------------
# a real, messy folder
# ---------------------------------------------------------------------------------------------------------------------


def test_a_messy_folder_gives_every_good_photo_and_names_every_bad_file(tmp_path: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    root = tmp_path / "photos"
    good = {  # key -> upright (width, height) of the original
        "astronaut": (512, 512),
        "coffee": (600, 400),
        "sub/chelsea": (451, 300),
        "sub/deeper/rocket": (640, 427),
        "cmyk": (48, 16),
        "grey16": (40, 20),
        "palette": (30, 20),
        "logo": (20, 20),
        "sideways": (16, 48),  # stored 48 x 16, EXIF orientation 6
        "small": (12, 9),
    }
    _save(root / "astronaut.jpg", skdata.astronaut(), quality=90)
    (root / "astronaut.txt").write_text("  an astronaut in front of a flag \n")
    _save(root / "coffee.png", skdata.coffee())
    _save(root / "sub" / "chelsea.jpg", skdata.chelsea())
    _save(root / "sub" / "deeper" / "rocket.JPG", skdata.rocket())  # extension case does not matter
    _save(root / "cmyk.jpeg", Image.fromarray(_patches()).convert("CMYK"))
    _save(root / "grey16.png", np.tile(np.linspace(0, 65535, 40), (20, 1)).astype(np.uint16))
    _save(root / "palette.png", Image.fromarray(_patches()[:, :30]).convert("P").resize((30, 20)))
    _save(root / "logo.png", np.full((20, 20, 4), (200, 0, 0, 128), np.uint8))
    _with_orientation(root / "sideways.jpg", _patches(), 6)
    _save(root / "small.png", np.full((9, 12, 3), 77, np.uint8))
    bad = {  # file name -> start of the reason
        "empty.jpg": "empty file",
        "half.jpg": "truncated JPEG",
        "cut.png": "truncated PNG",
        "notes.jpg": "not an image",
        "tiny.png": "too small: 3x2, minimum 8 px",
        "huge.png": "too large: 20000x15000",
        "astronaut.png": "duplicate sample key 'astronaut'",
    }
    (root / "empty.jpg").write_bytes(b"")
    _truncated(root / "half.jpg", skdata.coffee(), "JPEG")
    _truncated(root / "cut.png", skdata.chelsea(), "PNG")
    (root / "notes.jpg").write_text("this is text, not a picture")
    _save(root / "tiny.png", np.zeros((2, 3, 3), np.uint8))
    _png_header(root / "huge.png", 20000, 15000)
    _save(root / "astronaut.png", np.zeros((16, 16, 3), np.uint8))  # same key as astronaut.jpg, which sorts first
    for ignored in ("readme.txt", "clip.mp4", ".hidden.jpg", "._coffee.png"):  # not candidates
        (root / ignored).write_bytes(b"junk")

    folder = ImageFolder(root, image_size=32)
    assert len(folder) == len(good) + len(bad)
    results = list(folder.iter(skip_errors=True))
    assert len(results) == len(folder)
    records = [r for r in results if isinstance(r, PhotoRecord)]
    errors = [r for r in results if isinstance(r, IngestError)]
    assert {r.key: r.original_size for r in records} == good
    assert all(r.rgb.shape == (32, 32, 3) and r.rgb.dtype == np.uint8 for r in records)
    assert sorted(Path(e.path).name for e in errors) == sorted(bad)  # exactly one error per bad file
    for err in errors:
        name = Path(err.path).name
        assert err.reason.startswith(bad[name]), (name, err.reason)
        assert str(err).startswith(f"{root / name}: {err.reason}; expected ")
    by_key = {r.key: r for r in records}
    assert by_key["astronaut"].caption == "an astronaut in front of a flag" and by_key["coffee"].caption is None
    assert "upscaled from 12x9" in by_key["small"].notes
    assert "EXIF orientation applied" in by_key["sideways"].notes
    with pytest.raises(IngestError, match=r"empty\.jpg: empty file; expected "):
        folder[folder.keys.index("empty")]
    with pytest.raises(IngestError):  # strict iteration stops at the first bad file
        list(folder)


def test_bad_file_messages_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    broken = _truncated(tmp_path / "broken.jpg", noise, "JPEG")  # cut inside the scan data
    with pytest.raises(IngestError) as info:
        load_photo(broken, 16)
    err = info.value
    assert err.path == str(broken) and err.reason.startswith("truncated JPEG (image file is truncated")
    assert str(err) == f"{broken}: {err.reason}; expected a decodable image"
    again = pickle.loads(pickle.dumps(err))  # errors cross process boundaries from loader workers
    assert (again.path, again.reason, str(again)) == (err.path, err.reason, str(err))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(IngestError) as info:
        load_photo(tmp_path / "empty.png", 16)
    assert info.value.reason == "empty file"
    with pytest.raises(IngestError, match="file not found"):
        load_photo(tmp_path / "missing.jpg", 16)


def test_a_truncated_file_is_never_accepted_partially(tmp_path: Path) -> None:
    """Cut at several points inside the pixel data: every cut fails; none comes back with a grey bottom."""
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(data, format="PNG")
    full = data.getvalue()  # noise: ~12 kB of incompressible IDAT, so each cut lands inside it
    for fraction in (0.3, 0.6, 0.95):
        path = tmp_path / f"cut{int(fraction * 100)}.png"
        path.write_bytes(full[: int(len(full) * fraction)])
        with pytest.raises(IngestError, match=r"(truncated|corrupt) PNG"):
            load_photo(path, 16)


# ---------------------------------------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------------------------------------


def test_cmyk_is_converted_with_colours_preserved(tmp_path: Path) -> None:
    path = _save(tmp_path / "cmyk.jpg", Image.fromarray(_patches()).convert("CMYK"), quality=95)
    with Image.open(path) as stored:
        assert stored.mode == "CMYK"
    rec = load_photo(path, 48, crop="pad")
    assert "converted CMYK to RGB" in rec.notes
    centres = rec.rgb[24, [8, 24, 40]].astype(int)  # content occupies rows 16..31
    assert np.abs(centres - _patches()[8, [8, 24, 40]].astype(int)).max() < 20


def test_16_bit_ramp_keeps_its_order_and_full_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)
    path = _save(tmp_path / "ramp16.png", ramp)
    with Image.open(path) as stored:
        assert stored.mode in ("I;16", "I")
    rec = load_photo(path, 64)
    assert "16-bit PNG scaled to 8 bits" in rec.notes and "grayscale expanded to RGB" in rec.notes
    row = rec.rgb[10, :, 0].astype(int)
    assert (np.diff(row) >= 0).all() and row[0] <= 1 and row[-1] >= 254
    assert (rec.rgb[..., 0] == rec.rgb[..., 2]).all()
    floats = load_photo(_save(tmp_path / "f.tif", np.full((10, 10), 0.5, np.float32)), 10)
    assert any("float" in n for n in floats.notes) and (floats.rgb == 128).all()


def test_grey_palette_and_alpha_become_rgb_on_white(tmp_path: Path) -> None:
    grey = load_photo(_save(tmp_path / "g.png", np.full((20, 20), 100, np.uint8)), 16)
    assert "grayscale expanded to RGB" in grey.notes and (grey.rgb == 100).all()
    adaptive = Image.fromarray(_patches()).convert("P", palette=Image.Palette.ADAPTIVE)
    palette = load_photo(_save(tmp_path / "p.png", adaptive), 48, crop="pad")
    assert "palette converted to RGB" in palette.notes
    assert np.abs(palette.rgb[24, 8].astype(int) - (220, 30, 30)).max() < 10
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, 10:] = (200, 0, 0, 255)  # left half fully transparent (and black underneath), right half opaque red
    alpha = load_photo(_save(tmp_path / "a.png", rgba), 20)
    assert "alpha composited on white" in alpha.notes
    assert (alpha.rgb[:, :8] == 255).all() and (alpha.rgb[:, 12:] == (200, 0, 0)).all()
    la = np.zeros((20, 20, 2), np.uint8)
    la[..., 0], la[..., 1] = 0, 128  # black at half opacity on white -> mid grey
    half = load_photo(_save(tmp_path / "la.png", Image.fromarray(la, "LA")), 20)
    assert {"grayscale expanded to RGB", "alpha composited on white"} <= set(half.notes)
    assert np.abs(half.rgb.astype(int) - 127).max() <= 2
    transparent_palette = Image.fromarray(rgba).convert("P")  # keeps a transparent index
    tp = load_photo(_save(tmp_path / "tp.png", transparent_palette), 20)
    assert "alpha composited on white" in tp.notes and (tp.rgb[:, :8] == 255).all()


def test_exif_orientation_is_applied_and_sizes_are_upright(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white as stored; orientation 6 shows it on top
    rec = load_photo(_with_orientation(tmp_path / "r.jpg", stored, 6, quality=95), 16, crop="pad")
    assert rec.original_size == (20, 40) and rec.crop_box == (0, 0, 20, 40)
    assert "EXIF orientation applied" in rec.notes
    assert rec.rgb[2, 8].mean() > 200 and rec.rgb[13, 8].mean() < 50
    upside_down = load_photo(_with_orientation(tmp_path / "u.jpg", stored, 3, quality=95), 16, crop="pad")
    assert upside_down.original_size == (40, 20) and upside_down.rgb[8, 13].mean() > 200  # white now on the right
    plain = load_photo(_save(tmp_path / "p.jpg", stored, quality=95), 16, crop="pad")
    assert "EXIF orientation applied" not in plain.notes and plain.rgb[8, 2].mean() > 200


def test_odd_content_is_noted(tmp_path: Path) -> None:
    jpeg_named_png = tmp_path / "photo.png"
    Image.fromarray(_patches()).save(jpeg_named_png, format="JPEG")
    assert "content is JPEG despite .png extension" in load_photo(jpeg_named_png, 16).notes
    frames = [Image.fromarray(_patches()), Image.fromarray(255 - _patches())]
    frames[0].save(tmp_path / "two.tif", save_all=True, append_images=frames[1:])
    rec = load_photo(tmp_path / "two.tif", 48, crop="pad")
    assert "first of 2 frames used" in rec.notes and rec.rgb[24, 8, 0] > 200


def test_icc_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ImageCms = pytest.importorskip("PIL.ImageCms")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tagged = load_photo(_save(tmp_path / "s.png", _patches(), icc_profile=srgb), 48, crop="pad")
    assert tagged.notes == () and np.abs(tagged.rgb[24, 8].astype(int) - (220, 30, 30)).max() <= 1
    broken = load_photo(_save(tmp_path / "b.png", _patches(), icc_profile=b"not a profile"), 16)
    assert "embedded ICC profile unusable, ignored" in broken.notes
    # A non-sRGB profile goes through LittleCMS: pretend the sRGB one is "Display P3" to exercise the path.
    monkeypatch.setattr(photo_pixels, "_icc_name", lambda icc: "Display P3")
    converted = load_photo(tmp_path / "s.png", 48, crop="pad")
    assert "converted from ICC profile 'Display P3' to sRGB" in converted.notes
    assert np.abs(converted.rgb[24, 8].astype(int) - (220, 30, 30)).max() <= 3
    skipped = load_photo(tmp_path / "s.png", 48, crop="pad", convert_icc=False)
    assert skipped.notes == ()


# ---------------------------------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------------------------------


def test_huge_images_are_refused_from_the_header(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's warning must not leak either
        for width, height in ((12000, 9000), (20000, 15000)):  # above our 100 MP; above Pillow's warning / its error
            path = _png_header(tmp_path / f"h{width}.png", width, height)
            with pytest.raises(IngestError) as info:
                load_photo(path, 32)
            assert info.value.reason == f"too large: {width}x{height} is over 100000000 pixels"
            assert str(info.value).endswith("expected at most 100 megapixels")
        with pytest.raises(IngestError, match=r"too large: 40x30 is over 1000 pixels"):
            load_photo(_save(tmp_path / "small.png", np.zeros((30, 40, 3), np.uint8)), 16, max_pixels=1000)
        # Allowed by our limit but beyond Pillow's hard limit: said plainly, Pillow's global is not touched.
        with pytest.raises(IngestError, match=r"20000x15000 is over Pillow's decompression-bomb limit"):
            load_photo(tmp_path / "h20000.png", 32, max_pixels=10**9)


def test_large_jpegs_are_draft_decoded_and_still_accurate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    skdata = pytest.importorskip("skimage.data")
    big = np.asarray(Image.fromarray(skdata.astronaut()).resize((2400, 1600), Image.Resampling.BICUBIC))
    path = _with_orientation(tmp_path / "big.jpg", big, 8, quality=92)  # stored landscape, shown portrait
    drafts: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None):  # type: ignore[no-untyped-def]
        result = original(self, mode, size)
        drafts.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    rec = load_photo(path, 32)
    assert drafts == [(300, 200)]  # decoded at 1/8 scale: 64x fewer pixels
    assert rec.original_size == (1600, 2400) and rec.crop_box == (0, 400, 1600, 2000)
    upright = Image.fromarray(big).transpose(Image.Transpose.ROTATE_90)
    reference = np.asarray(upright.crop(rec.crop_box).resize((32, 32), Image.Resampling.LANCZOS), int)
    assert np.abs(rec.rgb.astype(int) - reference).mean() < 3


def test_tiny_images_are_upscaled_or_rejected(tmp_path: Path) -> None:
    for width, height in ((1, 1), (3, 2)):
        path = _save(tmp_path / f"t{width}x{height}.png", np.zeros((height, width, 3), np.uint8))
        with pytest.raises(IngestError) as info:
            load_photo(path, 16)
        assert info.value.reason == f"too small: {width}x{height}, minimum 8 px"
    rec = load_photo(_save(tmp_path / "t12x9.png", np.full((9, 12, 3), 50, np.uint8)), 16)
    assert "upscaled from 12x9" in rec.notes and rec.original_size == (12, 9) and (rec.rgb == 50).all()
    lenient = load_photo(tmp_path / "t3x2.png", 16, min_side=2)
    assert lenient.rgb.shape == (16, 16, 3) and "upscaled from 3x2" in lenient.notes
    assert "upscaled from" not in " ".join(load_photo(tmp_path / "t12x9.png", 8).notes)


# ---------------------------------------------------------------------------------------------------------------------
# geometry and quality
# ---------------------------------------------------------------------------------------------------------------------


def test_centre_crop_matches_a_reference_resize(tmp_path: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    astronaut = skdata.astronaut()  # 512 x 512: an 8x8 block mean is an exact, Pillow-free reference
    rec = load_photo(_save(tmp_path / "a.png", astronaut), 64)
    block_mean = astronaut.reshape(64, 8, 64, 8, 3).mean(axis=(1, 3))
    assert rec.crop_box == (0, 0, 512, 512) and np.abs(rec.rgb - block_mean).mean() < 4
    coffee = skdata.coffee()  # 600 x 400: the centre square is columns 100..500
    rec = load_photo(_save(tmp_path / "c.png", coffee), 40)
    assert rec.crop_box == (100, 0, 500, 400)
    reference = np.asarray(Image.fromarray(coffee[:, 100:500]).resize((40, 40), Image.Resampling.LANCZOS), int)
    assert np.abs(rec.rgb.astype(int) - reference).mean() < 1.5


def test_pad_keeps_the_whole_image(tmp_path: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    coffee = skdata.coffee()  # 600 x 400 -> 60 x 40 content between two 10-row bands
    path = _save(tmp_path / "c.png", coffee)
    rec = load_photo(path, 60, crop="pad")
    assert rec.crop_box == (0, 0, 600, 400) and rec.original_size == (600, 400)
    assert (rec.rgb[:10] == 0).all() and (rec.rgb[50:] == 0).all()
    whole = np.asarray(Image.fromarray(coffee).resize((60, 40), Image.Resampling.LANCZOS), int)
    assert np.abs(rec.rgb[10:50].astype(int) - whole).mean() < 1.5
    white = load_photo(path, 60, crop="pad", pad_color=(255, 255, 255))
    assert (white.rgb[:10] == 255).all()
    tall = load_photo(_save(tmp_path / "tall.png", np.full((40, 10, 3), 9, np.uint8)), 20, crop="pad")
    assert (tall.rgb[:, :7] == 0).all() and (tall.rgb[:, 8:12] == 9).all()


# ---------------------------------------------------------------------------------------------------------------------
# folder behaviour
# ---------------------------------------------------------------------------------------------------------------------


def test_sidecar_captions(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("plain", "blank", "bom", "upper", "latin1", "none"):
        _save(tmp_path / f"{name}.png", image)
    (tmp_path / "plain.txt").write_text("\n  a red bus on a wet street \n\n", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("  \n\t", encoding="utf-8")
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé au lait".encode())
    (tmp_path / "upper.TXT").write_text("shouting", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    results = {Path(r.path).stem: r for r in ImageFolder(tmp_path, image_size=8).iter(skip_errors=True)}
    assert results["plain"].caption == "a red bus on a wet street"
    assert results["blank"].caption is None and results["none"].caption is None
    assert results["bom"].caption == "café au lait" and results["upper"].caption == "shouting"
    assert isinstance(results["latin1"], IngestError) and "latin1.txt is not UTF-8" in results["latin1"].reason


def test_order_keys_and_candidates_are_deterministic(tmp_path: Path) -> None:
    names = ["b.png", "a/z.JPG", "a.png", "c/b/a.webp", "A.png", "a/b.Jpeg", "d.tif", "e.bmp", "f.tiff"]
    for name in reversed(names):  # creation order must not matter
        _save(tmp_path / name, np.zeros((8, 8, 3), np.uint8))
    for junk in ("x.txt", "y.mp4", ".z.png", ".cache/w.png"):
        (tmp_path / junk).parent.mkdir(exist_ok=True)
        (tmp_path / junk).write_bytes(b"junk")
    first, second = ImageFolder(tmp_path, image_size=8), ImageFolder(str(tmp_path) + "/", image_size=8)
    # Sorted by path components, so a folder's files stay together: "a/..." sorts before "a.png".
    assert first.keys == second.keys == ("A", "a/b", "a/z", "a", "b", "c/b/a", "d", "e", "f")
    assert [r.key for r in first] == list(first.keys)
    assert first.files == [
        tmp_path / p
        for p in ("A.png", "a/b.Jpeg", "a/z.JPG", "a.png", "b.png", "c/b/a.webp", "d.tif", "e.bmp", "f.tiff")
    ]
    assert len(ImageFolder(tmp_path, image_size=8, skip_hidden=False)) == len(names) + 2
    assert first[-1].key == "f"
    with pytest.raises(IndexError):
        first[len(first)]


def test_config_is_validated_and_shared(tmp_path: Path) -> None:
    _save(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        ImageFolder(tmp_path, image_size=8, crop="stretch")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ImageFolder(tmp_path, image_size=8, colour="red")
    with pytest.raises(ValueError):
        ImageFolderConfig(image_size=8, pad_color=(0, 0, 300))
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "nowhere", image_size=8)
    base = ImageFolderConfig(image_size=8, crop="pad", min_side=4)
    folder = ImageFolder(tmp_path, config=base, image_size=16)
    assert folder.config == ImageFolderConfig(image_size=16, crop="pad", min_side=4)
    rec = folder[0]
    assert rec.key == "x" and rec.path == str(tmp_path / "x.png") and rec.rgb.shape == (16, 16, 3)
    assert load_photo(tmp_path / "x.png", 8, root=tmp_path.parent).key == f"{tmp_path.name}/x"
