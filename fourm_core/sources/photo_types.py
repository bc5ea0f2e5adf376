"""What photo ingestion is configured with and what it produces: :class:`ImageFolderConfig`, :class:`PhotoRecord`
and :class:`IngestError` (see :mod:`fourm_core.sources.image_folder` for the rules they serve)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderConfig", "IngestError", "PhotoRecord"]

#: File extensions that make a file a candidate photo (compared lower-cased). A ``.gif`` is ingested as its first
#: frame (noted when there are more), never skipped without a word.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

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
