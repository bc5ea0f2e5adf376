"""Reading one photo file safely: cheap file checks, lazy opening with Pillow's identification and
decompression-bomb failures turned into :class:`IngestError`, the size check from the header, EXIF orientation, the
crop box, JPEG draft decoding and the full decode that makes truncation surface now, for this file only."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError

from fourm_core.sources.photo_types import _EXPECT_FORMAT, _EXPECT_IMAGE, ImageFolderConfig, IngestError

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
    ".gif": frozenset({"GIF"}),
}

#: Decode JPEGs at the smallest DCT scale that still leaves this many times the target resolution (Pillow's own
#: ``thumbnail`` uses 2): the final Lanczos pass then has enough pixels to anti-alias properly.
DRAFT_GAP = 2.0
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
