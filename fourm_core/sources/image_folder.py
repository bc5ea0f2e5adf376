"""Photo folders as a source: every JPEG/PNG/... file resized and cropped to the preset, with its original size and an
optional sidecar caption.

Bad files never stop a folder: each is either converted (CMYK, 16-bit, grey, palette, alpha, EXIF rotation, small
images upscaled) with a note saying so, or rejected with an :class:`IngestError` that names the file, the problem and
what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ImageFolder", "ImageFolderConfig", "IngestError", "PhotoRecord", "load_photo"]

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


class IngestError(Exception):
    """A file that cannot become a sample; the message names it and what was expected."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class ImageFolderConfig(BaseModel):
    """How photos are loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=8)
    crop: Literal["center", "pad"] = "center"
    min_side: int = Field(8, ge=1, description="smaller images are rejected; larger-than-this small ones upscaled")
    max_pixels: int = Field(100_000_000, description="larger images are refused before decoding")


@dataclass(frozen=True)
class PhotoRecord:
    """One loaded photo."""

    key: str
    path: str
    rgb: np.ndarray
    original_size: tuple[int, int]
    caption: str | None
    crop_box: tuple[int, int, int, int]
    notes: tuple[str, ...]


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, recording what was converted."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 or mode.startswith("I;16") else 255.0
        notes.append(f"{'16' if top > 255 else '32'}-bit grey scaled to 8 bits")
        image = Image.fromarray(np.clip(array / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-12)
        notes.append("float image normalised to 8 bits")
        image = Image.fromarray(((array - array.min()) / span * 255 + 0.5).astype(np.uint8), "L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        notes.append("alpha composited on white")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
    elif mode in ("L", "1"):
        notes.append("grayscale expanded to RGB")
    elif mode == "P":
        notes.append("palette expanded to RGB")
    elif mode != "RGB":
        notes.append(f"converted {mode} to RGB")
    return image.convert("RGB")


def load_photo(
    path: str | Path,
    image_size: int,
    crop: str = "center",
    min_side: int = 8,
    max_pixels: int = 100_000_000,
    root: str | Path | None = None,
) -> PhotoRecord:
    """Load one file as a :class:`PhotoRecord`; raise :class:`IngestError` for a file that cannot be a sample."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise IngestError(path, "empty file (0 bytes); expected an image")
    notes: list[str] = []
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            width, height = image.size
            if width * height > max_pixels:
                raise IngestError(path, f"too large: {width}x{height} is over {max_pixels} pixels")
            if image.format == "JPEG" and max(width, height) > 4 * image_size:
                image.draft("RGB", (2 * image_size, 2 * image_size))  # decode at reduced size, cheaply
            image.load()
    except IngestError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise IngestError(path, f"too large: {exc}") from None
    except UnidentifiedImageError:
        raise IngestError(path, "not an image (unrecognised format); expected JPEG, PNG, WebP, BMP or TIFF") from None
    except OSError as exc:
        raise IngestError(path, f"truncated or corrupt image ({exc}); expected a fully decodable image") from None
    if min(width, height) < min_side:
        raise IngestError(path, f"too small: {width}x{height}, minimum {min_side} px")
    if image.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        notes.append("EXIF orientation applied")
        image = ImageOps.exif_transpose(image)
    image = _to_rgb(image, notes)
    w, h = image.size
    if crop == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        image = image.crop(box)
    else:
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (0, 0, 0))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        box = (0, 0, w, h)
        image = canvas
    if image.size[0] < image_size:
        notes.append(f"upscaled from {image.size[0]}x{image.size[1]}")
    image = image.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    caption_file = path.with_suffix(".txt")
    caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
    key = str(path.relative_to(root).with_suffix("")) if root is not None else path.stem
    return PhotoRecord(key, str(path), np.asarray(image, np.uint8), (width, height), caption or None, box, tuple(notes))


class ImageFolder:
    """Every image file under a folder (recursive, sorted), loaded on access."""

    def __init__(self, root: str | Path, image_size: int = 64, crop: str = "center", **options: int) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder")
        self.config = ImageFolderConfig(image_size=image_size, crop=crop, **options)
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> PhotoRecord:
        c = self.config
        return load_photo(self.files[index], c.image_size, c.crop, c.min_side, c.max_pixels, self.root)

    def iter(self, skip_errors: bool = True) -> Iterator[PhotoRecord | IngestError]:
        """Records in order; with ``skip_errors`` bad files come out as IngestError values instead of raising."""
        for index in range(len(self)):
            try:
                yield self[index]
            except IngestError as exc:
                if not skip_errors:
                    raise
                yield exc
