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

import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from fourm_core.sources.photo_decode import (
    _ORIENTATION_TRANSPOSE,
    _check_file,
    _check_size,
    _crop_box,
    _decode,
    _draft,
    _exif_orientation,
    _note_format,
    _open,
    _read_caption,
    _upright_size,
)
from fourm_core.sources.photo_pixels import _resize, _to_rgb
from fourm_core.sources.photo_types import IMAGE_EXTENSIONS, ImageFolderConfig, IngestError, PhotoRecord

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageFolderConfig",
    "IngestError",
    "PhotoRecord",
    "load_photo",
]


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
    several workers, say); ``files`` (names relative to the folder, e.g. a store's recorded list) pins it instead of
    scanning, so a resumed ingest keeps every index even when photos were added since (a missing one fails alone).
    ``folder[i]`` raises :class:`IngestError` for a bad file; ``folder.iter(skip_errors=True)`` yields it instead.
    Two files with the same key ('a.jpg' and 'a.png') would collide in a store: the first in order
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
        files: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.root}: no such folder; expected a folder of photos")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root}: not a folder; expected a folder of photos")
        self.config = _merge_config(config, image_size, crop, options)
        self.paths: tuple[Path, ...] = (
            tuple(_scan(self.root, self.config.skip_hidden)) if files is None else _pinned(self.root, files)
        )
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

    def inventory(self) -> list[tuple[str, int, int]]:
        """``(name relative to the folder, size, mtime_ns)`` of every candidate file in order (``-1`` for a file
        that is gone): what a store records so that a resume notices a folder that changed."""
        out = []
        for path in self.paths:
            name = path.relative_to(self.root).as_posix()
            try:
                st = path.stat()
                out.append((name, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((name, -1, -1))
        return out

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


def _pinned(root: Path, files: Sequence[str]) -> tuple[Path, ...]:
    """Paths of recorded names; a name that would leave the folder (absolute, ``..``) is refused, since the list
    comes from a store that someone else may have written."""
    out = []
    for name in files:
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ValueError(f"{root}: recorded file name {name!r} is not a path inside the folder")
        out.append(root.joinpath(*parts))
    return tuple(out)


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
