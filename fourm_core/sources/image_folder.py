"""Photo ingestion: a folder of real photos (with optional sidecar captions) as fixed-size RGB records.

Real folders are messy: zero-byte files, half-copied JPEGs, text files with an image extension, CMYK scans, 16-bit
PNGs, palette GIF-style PNGs, transparent logos, phone photos stored sideways with an EXIF orientation, panoramas of
hundreds of megapixels and 1x1 tracking pixels. Every one of these must either become a correct RGB image (and say
what was done to it, in ``notes``, so the conversion is auditable in the store) or fail *alone* with an
:class:`IngestError` that names the file and what was expected, so one bad file never stops a run of thousands.

Three rules keep the output trustworthy:

* Nothing partial is accepted: Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never turned on here and every image
  is fully decoded (``.load()``) inside :func:`load_photo`, so a truncated file fails now instead of yielding a grey
  bottom half, or failing later in a worker.
* Size is checked from the header before any pixel is decoded: too-large images are refused (our own configurable
  limit; Pillow's decompression-bomb warning and error are turned into the same :class:`IngestError`), large JPEGs are
  decoded directly at a reduced scale with ``Image.draft`` and other large images are shrunk with integer ``reduce``
  before the final Lanczos resize.
* Geometry is explicit: ``original_size`` and ``crop_box`` are in pixels of the *upright* original (after the EXIF
  orientation is applied, at full resolution even when the JPEG was draft-decoded), so metadata computed from them
  describes the photo as a person sees it.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageFolderConfig",
    "IngestError",
    "PhotoRecord",
    "load_photo",
]

#: File extensions that make a file a candidate photo (compared lower-cased).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

#: The Pillow formats a candidate may actually contain. Restricting ``Image.open`` to these keeps exotic decoders
#: (EPS runs Ghostscript, for one) away from files that merely carry an image extension. MPO is how Pillow names
#: multi-picture JPEGs from many cameras; GIF is accepted because a mis-named GIF is still a photo-sized picture.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "TIFF", "GIF")

#: Which formats each extension normally holds; anything else is decoded but gets a note.
_EXPECTED_FORMATS: dict[str, frozenset[str]] = {
    ".jpg": frozenset({"JPEG", "MPO"}),
    ".jpeg": frozenset({"JPEG", "MPO"}),
    ".png": frozenset({"PNG"}),
    ".webp": frozenset({"WEBP"}),
    ".bmp": frozenset({"BMP", "DIB"}),
    ".tif": frozenset({"TIFF"}),
    ".tiff": frozenset({"TIFF"}),
}

#: Decode JPEGs at the smallest DCT scale that still leaves this many times the target resolution (Pillow's own
#: ``thumbnail`` uses 2): the final Lanczos pass then has enough pixels to anti-alias properly.
DRAFT_GAP = 2.0
#: ``Image.resize(reducing_gap=...)``: integer box reduction first, Lanczos on the last factor 3. Pillow documents 3
#: as indistinguishable from a full Lanczos pass, at a fraction of the cost for large images.
REDUCING_GAP = 3.0

_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}

#: EXIF orientation tag value -> the transpose that makes the image upright (same table as ``ImageOps``).
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_EXPECT_IMAGE = "a decodable image"
_EXPECT_FORMAT = "a JPEG, PNG, WebP, BMP or TIFF image"


class ImageFolderConfig(BaseModel):
    """How photos are turned into square RGB samples; validated once, shared by every file of a folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=1, description="side S of the square uint8 (S, S, 3) output")
    crop: Literal["center", "pad"] = Field(
        "center", description="'center': shorter side to S, then centre crop; 'pad': whole image letterboxed"
    )
    max_pixels: int = Field(
        100_000_000, ge=1, description="refuse images with more pixels than this (checked from the header)"
    )
    min_side: int = Field(8, ge=1, description="refuse images whose shorter side is below this; smaller are upscaled")
    pad_color: tuple[int, int, int] = Field((0, 0, 0), description="letterbox colour for crop='pad'")
    resample: Literal["lanczos", "bicubic", "bilinear", "box"] = Field("lanczos", description="final resize filter")
    convert_icc: bool = Field(True, description="convert images with a non-sRGB ICC profile (CMYK, Display P3 ...)")
    skip_hidden: bool = Field(True, description="ignore files and folders whose name starts with '.' (._x.jpg ...)")

    def model_post_init(self, __context: Any) -> None:
        """Pydantic checks the tuple's shape; the channel range is ours."""
        if any(not 0 <= c <= 255 for c in self.pad_color):
            raise ValueError(f"pad_color must be three values in 0..255, got {self.pad_color}")


class IngestError(Exception):
    """One file could not become a photo record; names the file, the reason and what was expected instead.

    It is raised by :func:`load_photo` and ``ImageFolder[i]``, and *yielded* by ``ImageFolder.iter(skip_errors=True)``
    so a run can log it and go on. It pickles with its attributes, so it crosses process boundaries intact.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, expected: str = _EXPECT_IMAGE) -> None:
        self.path = str(path)  # str, not Path: errors end up in JSON failure logs
        self.reason = reason
        self.expected = expected
        super().__init__(f"{path}: {reason}; expected {expected}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason, self.expected))


@dataclass(frozen=True, eq=False)
class PhotoRecord:
    """One ingested photo. ``eq=False``: records hold arrays, so equality would be ambiguous; compare fields.

    Attributes:
        key: path relative to the folder, POSIX separators, without extension: the stable sample key.
        path: the file that was read (a string, like ``IngestError.path``).
        rgb: uint8 (S, S, 3) after conversion, orientation, crop and resize.
        original_size: (width, height) of the decoded original, upright, at full resolution.
        caption: stripped text of the sidecar ``<stem>.txt`` next to the image; None if absent or empty.
        crop_box: (left, top, right, bottom) in original pixels: the region that fills ``rgb`` (for ``crop='pad'``
            the whole image).
        notes: conversions performed, e.g. "converted CMYK to RGB", "EXIF orientation applied".
    """

    key: str
    path: str
    rgb: np.ndarray
    original_size: tuple[int, int]
    caption: str | None
    crop_box: tuple[int, int, int, int]
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------------------------
# single file
# --------------------------------------------------------------------------------------------------------------------


def load_photo(
    path: str | os.PathLike[str],
    image_size: int,
    crop: Literal["center", "pad"] = "center",
    min_side: int = 8,
    max_pixels: int = 100_000_000,
    root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> PhotoRecord:
    """Load one photo as a :class:`PhotoRecord`, or raise :class:`IngestError` naming the file.

    ``root`` only decides the key (path relative to it, without extension; the bare stem without it). ``options`` are
    the other :class:`ImageFolderConfig` fields (``pad_color``, ``resample`` ...). :class:`ImageFolder` validates its
    config once and calls the same pipeline.
    """
    config = ImageFolderConfig(image_size=image_size, crop=crop, min_side=min_side, max_pixels=max_pixels, **options)
    path = Path(path)
    key = _key_for(path, Path(root)) if root is not None else path.stem
    return _load(path, key, config)


def _load(path: Path, key: str, config: ImageFolderConfig) -> PhotoRecord:
    """The whole pipeline for one file: check, open lazily, validate size, decode, normalise, crop and resize.

    Everything happens while the file is open: some plugins (multi-frame TIFF) still read from it after ``load()``.
    """
    _check_file(path)
    caption = _read_caption(path)
    notes: list[str] = []
    with _open(path, config) as im:
        orientation = _exif_orientation(im, notes)
        size = _upright_size(im.size, orientation)
        _check_size(path, size, config)
        box = _crop_box(size, config.crop)
        scale = _draft(im, box, config)
        _decode(path, im)
        _note_format(path, im, notes)
        rgb_image = _to_rgb(im, notes, config)
        if orientation in _ORIENTATION_TRANSPOSE:
            rgb_image = rgb_image.transpose(_ORIENTATION_TRANSPOSE[orientation])
            notes.append("EXIF orientation applied")
        out = _resize(rgb_image, size, box, scale, config, notes)
    rgb = np.array(out, dtype=np.uint8)
    return PhotoRecord(key, str(path), rgb, size, caption, box, tuple(notes))


def _check_file(path: Path) -> None:
    """Cheap checks with the clearest messages, before Pillow sees the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IngestError(path, "file not found", "an existing file") from None
    except OSError as exc:
        raise IngestError(path, f"cannot read file ({exc.strerror or exc})", "a readable file") from None
    if not path.is_file():
        raise IngestError(path, "not a regular file", "an image file")
    if st.st_size == 0:
        raise IngestError(path, "empty file", "a non-empty image file")


def _read_caption(path: Path) -> str | None:
    """The sidecar caption: ``<stem>.txt`` (or ``.TXT``) beside the image, stripped; empty means none.

    A sidecar that is not UTF-8 fails the photo rather than being guessed at: a mis-decoded caption would silently
    become a training target.
    """
    for suffix in (".txt", ".TXT"):
        sidecar = path.with_suffix(suffix)
        if sidecar.is_file():
            try:
                text = sidecar.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError as exc:
                raise IngestError(
                    path, f"caption sidecar {sidecar.name} is not UTF-8 ({exc.reason})", "UTF-8 text"
                ) from None
            except OSError as exc:
                reason = f"cannot read caption sidecar {sidecar.name} ({exc})"
                raise IngestError(path, reason, "a readable file") from None
            return text or None
    return None


def _accepted_formats() -> list[str]:
    """ACCEPTED_FORMATS that this Pillow build can open (``Image.open`` raises KeyError on unknown ones)."""
    Image.init()
    return [f for f in ACCEPTED_FORMATS if f in Image.OPEN]


def _open(path: Path, config: ImageFolderConfig) -> Image.Image:
    """Open lazily (header only) and turn Pillow's identification and decompression-bomb failures into IngestError.

    Pillow's bomb *warning* (above ``Image.MAX_IMAGE_PIXELS``) is silenced: our own ``max_pixels`` decides, right
    after this. Its *error* (above twice that) fires before we could look, so it is reported with the size read from
    the header. We never change Pillow's process-wide limit. (``warnings.catch_warnings`` is process-wide too; the
    worst a concurrent thread can see is that one warning silenced.)
    """
    _warn_if_truncated_loading_enabled()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path, formats=_accepted_formats())
    except UnidentifiedImageError:
        raise IngestError(path, "not an image (format not recognised)", _EXPECT_FORMAT) from None
    except Image.DecompressionBombError as exc:
        raise IngestError(path, _bomb_reason(path, exc, config), _expect_pixels(config)) from None
    except MemoryError:
        raise
    except Exception as exc:  # a malformed header can make any plugin raise anything
        raise IngestError(path, _damage(_sniff_format(path), exc), _EXPECT_IMAGE) from None


def _warn_if_truncated_loading_enabled() -> None:
    """Someone else may have switched Pillow's global on; then truncation can no longer be detected. Say so."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process: truncated photos may be accepted with "
            "missing pixels. fourm's photo ingestion expects it to be False.",
            RuntimeWarning,
            stacklevel=3,
        )


def _bomb_reason(path: Path, exc: Exception, config: ImageFolderConfig) -> str:
    """'too large: WxH (...)' for an image Pillow refused outright."""
    size = _peek_size(path)
    if size is not None:
        pixels = size[0] * size[1]
        what = f"{size[0]}x{size[1]}"
    else:
        match = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(match.group(1)) if match else 0
        what = f"{pixels} pixels" if match else "size unknown"
    if pixels and pixels <= config.max_pixels:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return (
            f"too large: {what} is over Pillow's decompression-bomb limit of {limit} pixels "
            "(raise PIL.Image.MAX_IMAGE_PIXELS to load it)"
        )
    return f"too large: {what} is over {config.max_pixels} pixels"


def _peek_size(path: Path) -> tuple[int, int] | None:
    """The header's (width, height) without Pillow's bomb check, for error messages only; never decodes pixels."""
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(16)
            for fmt in _accepted_formats():
                factory, accept = Image.OPEN[fmt]
                if accept and not accept(prefix):
                    continue
                fh.seek(0)
                try:
                    return tuple(factory(fh, str(path)).size)  # type: ignore[return-value]
                except Exception:
                    continue
    except Exception:
        return None
    return None


def _expect_pixels(config: ImageFolderConfig) -> str:
    return f"at most {config.max_pixels / 1e6:g} megapixels"


def _exif_orientation(im: Image.Image, notes: list[str]) -> int:
    """The EXIF orientation (1 = upright). Broken EXIF is not worth losing a photo over: note it and go on."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:
        notes.append("unreadable EXIF ignored")
        return 1


def _upright_size(stored: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Orientations 5-8 swap width and height."""
    w, h = stored
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _check_size(path: Path, size: tuple[int, int], config: ImageFolderConfig) -> None:
    """Refuse before decoding: too many pixels costs memory and time, too few carries no information."""
    w, h = size
    if w * h > config.max_pixels:
        raise IngestError(path, f"too large: {w}x{h} is over {config.max_pixels} pixels", _expect_pixels(config))
    if min(w, h) < config.min_side:
        raise IngestError(
            path, f"too small: {w}x{h}, minimum {config.min_side} px", f"both sides at least {config.min_side} px"
        )


def _crop_box(size: tuple[int, int], crop: str) -> tuple[int, int, int, int]:
    """The region of the upright original that fills the output: a centred square, or everything for 'pad'."""
    w, h = size
    if crop == "pad":
        return (0, 0, w, h)
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return (left, top, left + side, top + side)


def _draft(im: Image.Image, box: tuple[int, int, int, int], config: ImageFolderConfig) -> int:
    """Let a large JPEG decode at 1/2, 1/4 or 1/8 scale (DCT scaling: fast and clean); returns the scale divisor.

    The request keeps at least ``DRAFT_GAP`` x the output resolution over the crop region. Orientation does not
    matter: the scale is the same on both axes.
    """
    if im.format not in ("JPEG", "MPO"):
        return 1
    target = config.image_size
    region = min(box[2] - box[0], box[3] - box[1]) if config.crop == "center" else max(box[2], box[3])
    k = DRAFT_GAP * target / region
    if k > 0.5:
        return 1
    w, h = im.size
    result = im.draft(None, (max(1, math.ceil(w * k)), max(1, math.ceil(h * k))))
    if result is None:
        return 1
    return max(1, round(w / result[1][2]))


def _decode(path: Path, im: Image.Image) -> None:
    """Decode every pixel now, so truncation and corruption surface here, as an error for this file only."""
    try:
        im.load()
    except MemoryError:
        raise
    except Exception as exc:
        raise IngestError(path, _damage(im.format or _sniff_format(path), exc), _EXPECT_IMAGE) from None


def _damage(fmt: str, exc: Exception) -> str:
    """'truncated JPEG (...)' or 'corrupt PNG (...)': the reason for a file that started like an image but broke."""
    detail = str(exc) or type(exc).__name__
    kind = "truncated" if "truncat" in detail.lower() or isinstance(exc, EOFError) else "corrupt"
    return f"{kind} {fmt} ({detail})"


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff_format(path: Path) -> str:
    """The format by magic bytes, for naming files Pillow could not even open (a header cut short)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), "image")


def _note_format(path: Path, im: Image.Image, notes: list[str]) -> None:
    """Record surprises that are not errors: content that does not match the extension, extra frames ignored."""
    expected = _EXPECTED_FORMATS.get(path.suffix.lower())
    if expected is not None and im.format not in expected:
        notes.append(f"content is {im.format} despite {path.suffix} extension")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"first of {frames} frames used")


# --------------------------------------------------------------------------------------------------------------------
# pixel modes
# --------------------------------------------------------------------------------------------------------------------


def _to_rgb(im: Image.Image, notes: list[str], config: ImageFolderConfig) -> Image.Image:
    """Any decoded mode -> 8-bit sRGB 'RGB', noting each conversion."""
    icc = im.info.get("icc_profile") if config.convert_icc else None
    fmt = im.format or "image"
    mode = im.mode
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc, notes)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _high_depth_to_l(im, fmt, notes)
        mode = "L"
    if mode == "1":
        notes.append("bilevel expanded to RGB")
        return im.convert("RGB")
    if mode in ("P", "PA"):
        im = _palette_expand(im, notes)
        mode = im.mode
    if mode in ("LA", "La", "RGBA", "RGBa"):
        if mode in ("LA", "La"):
            notes.append("grayscale expanded to RGB")
        return _icc_rgb(_composite_on_white(im, notes), icc, notes)
    if mode == "L":
        notes.append("grayscale expanded to RGB")
        return im.convert("RGB")
    if mode != "RGB":
        notes.append(f"converted {mode} to RGB")
        im = im.convert("RGB")
    return _icc_rgb(im, icc, notes)


def _high_depth_to_l(im: Image.Image, fmt: str, notes: list[str]) -> Image.Image:
    """16-bit and wider single-channel images -> 8-bit 'L', keeping order and full range.

    16-bit data maps 0..65535 onto 0..255 (rounded, i.e. v / 257); Pillow's own ``convert('L')`` would clip at 255
    instead. 32-bit integers that fit in 16 bits are treated as 16-bit (Pillow opens some 16-bit files as 'I');
    anything else, and floats outside [0, 1], is stretched from its own min..max, which the note records.
    """
    a = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        out = (a.astype(np.uint32) * 255 + 32767) // 65535
        notes.append(f"16-bit {fmt} scaled to 8 bits")
    elif im.mode == "F" and a.size and np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0:
        out = np.rint(a * 255.0)
        notes.append(f"float {fmt} in [0, 1] scaled to 8 bits")
    else:
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        out = np.rint((a - lo) * (255.0 / (hi - lo))) if hi > lo else np.zeros_like(a)
        notes.append(f"{im.mode} {fmt} stretched from [{lo:g}, {hi:g}] to 8 bits")
    return Image.fromarray(out.astype(np.uint8), "L")


def _palette_expand(im: Image.Image, notes: list[str]) -> Image.Image:
    """Palette -> RGBA when the palette has transparency (then composited like any alpha), else RGB."""
    transparent = im.mode == "PA" or "transparency" in im.info
    notes.append("palette converted to RGB")
    return im.convert("RGBA" if transparent else "RGB")


def _composite_on_white(im: Image.Image, notes: list[str]) -> Image.Image:
    """Put the image on white: the colour under transparent pixels is arbitrary, white is what viewers show."""
    rgba = im.convert("RGBA")
    notes.append("alpha composited on white")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one (print profiles differ a lot), else naively.

    Pillow already un-inverts Adobe-style CMYK JPEGs while decoding, so the naive path is right for those too.
    """
    notes.append("converted CMYK to RGB")
    if icc:
        converted = _icc_convert(im, icc, "CMYK")
        if converted is not None:
            notes.append(f"used embedded ICC profile {_icc_name(icc)!r}")
            return converted
        notes.append("embedded ICC profile unusable, ignored")
    return im.convert("RGB")


def _icc_rgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """RGB with a non-sRGB profile (Display P3 from phones, Adobe RGB from cameras) -> sRGB; sRGB is left as is."""
    if not icc or "srgb" in _icc_name(icc).lower().replace(" ", ""):
        return im
    converted = _icc_convert(im, icc, "RGB")
    if converted is None:
        notes.append("embedded ICC profile unusable, ignored")
        return im
    notes.append(f"converted from ICC profile {_icc_name(icc)!r} to sRGB")
    return converted


def _icc_convert(im: Image.Image, icc: bytes, colour_space: str) -> Image.Image | None:
    """Convert with LittleCMS; None when the profile is broken, of another colour space, or lcms is missing."""
    try:
        import io

        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != colour_space:
            return None
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
    except Exception:
        return None


def _icc_name(icc: bytes) -> str:
    """The profile's description, for notes."""
    try:
        import io

        from PIL import ImageCms

        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------------------------


def _resize(
    im: Image.Image,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    scale: int,
    config: ImageFolderConfig,
    notes: list[str],
) -> Image.Image:
    """Crop and resize in one resampling pass (``box`` in draft-scaled pixels), letterboxing for 'pad'."""
    s = config.image_size
    w, h = size
    if config.crop == "center":
        out_size = (s, s)
    else:
        f = s / max(w, h)
        out_size = (max(1, min(s, round(w * f))), max(1, min(s, round(h * f))))
    if out_size[0] > box[2] - box[0] or out_size[1] > box[3] - box[1]:
        notes.append(f"upscaled from {w}x{h}")
    scaled_box = tuple(v / scale for v in box)
    resized = im.resize(out_size, _RESAMPLE[config.resample], box=scaled_box, reducing_gap=REDUCING_GAP)
    if out_size == (s, s):
        return resized
    canvas = Image.new("RGB", (s, s), config.pad_color)
    canvas.paste(resized, ((s - out_size[0]) // 2, (s - out_size[1]) // 2))
    return canvas


# --------------------------------------------------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------------------------------------------------


def _key_for(path: Path, root: Path) -> str:
    """Relative POSIX path without extension: identical on every OS, and stable when the folder is moved."""
    rel = path.relative_to(root)
    return rel.with_suffix("").as_posix()


def _scan(root: Path, skip_hidden: bool) -> list[Path]:
    """Candidate files under ``root``, recursively, in a fixed order independent of the filesystem and locale.

    Sorted by path components (code-point order), so 'a/b.jpg' and 'a.jpg' order the same everywhere. Symlinked
    folders are not followed (no cycles, no escaping the root); symlinked files are included.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if skip_hidden and name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


class ImageFolder:
    """A folder of photos as an indexable sequence of :class:`PhotoRecord`; bad files fail one at a time.

    The file list is taken once, at construction, so ``len`` and indices stay stable while the folder is read (by
    several workers, say). ``folder[i]`` raises :class:`IngestError` for a bad file; ``folder.iter(skip_errors=True)``
    yields it instead. Two files with the same key ('a.jpg' and 'a.png') would collide in a store: the first in order
    wins and the others fail with an IngestError.

    >>> folder = ImageFolder("photos/", image_size=64, crop="center")   # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | None = None,
        crop: Literal["center", "pad"] | None = None,
        *,
        config: ImageFolderConfig | None = None,
        **options: Any,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.root}: no such folder; expected a folder of photos")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root}: not a folder; expected a folder of photos")
        self.config = _merge_config(config, image_size, crop, options)
        self.paths: tuple[Path, ...] = tuple(_scan(self.root, self.config.skip_hidden))
        self.keys: tuple[str, ...] = tuple(_key_for(p, self.root) for p in self.paths)
        self._first_with_key: dict[str, Path] = {}
        for key, path in zip(self.keys, self.paths):
            self._first_with_key.setdefault(key, path)

    @property
    def files(self) -> list[Path]:
        """The candidate files in order (``paths`` as a list)."""
        return list(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> PhotoRecord:
        """Photo ``index`` (negative indices count from the end); IngestError for a bad file."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"photo index {index} out of range for {len(self)} files in {self.root}")
        path, key = self.paths[index], self.keys[index]
        first = self._first_with_key[key]
        if first != path:
            raise IngestError(path, f"duplicate sample key {key!r} (also {first})", "one image per key")
        return _load(path, key, self.config)

    def iter(self, skip_errors: bool = True) -> Iterator[PhotoRecord | IngestError]:
        """Every photo in order. With ``skip_errors`` a bad file is yielded as its IngestError and the run goes on;
        without, the first bad file raises."""
        for i in range(len(self)):
            try:
                yield self[i]
            except IngestError as err:
                if not skip_errors:
                    raise
                yield err

    def __iter__(self) -> Iterator[PhotoRecord]:
        """Strict iteration: raises at the first bad file (use ``iter(skip_errors=True)`` to go on)."""
        for item in self.iter(skip_errors=False):
            assert isinstance(item, PhotoRecord)
            yield item

    def __repr__(self) -> str:
        return (
            f"ImageFolder({str(self.root)!r}, {len(self)} files, image_size={self.config.image_size}, "
            f"crop={self.config.crop!r})"
        )


def _merge_config(
    config: ImageFolderConfig | None, image_size: int | None, crop: str | None, options: dict[str, Any]
) -> ImageFolderConfig:
    """Keyword arguments build the config, or override fields of a given one (validated either way)."""
    fields = dict(options)
    if image_size is not None:
        fields["image_size"] = image_size
    if crop is not None:
        fields["crop"] = crop
    if config is None:
        return ImageFolderConfig(**fields)
    return ImageFolderConfig(**{**config.model_dump(), **fields})
