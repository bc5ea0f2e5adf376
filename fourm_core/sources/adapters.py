"""Store adapters for the built-in sources: what each writes into a store's ``source`` part.

Sources describe data, not dispatch, so this module may name the ground-truth fields a source provides (``depth``,
``caption`` ...); modality plugins' labelers read them by these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fourm_core.sources.protocol import SourceSettings
from fourm_core.spec import ArraySpec

__all__ = ["PhotoSource", "SyntheticSource"]


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays inside nested lists/dicts as plain Python (for JSON fields)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class SyntheticSource:
    """The synthetic world as a source: exact ground truth for every geometric and semantic field."""

    n: int
    image_size: int
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "synthetic_world"

    def __post_init__(self) -> None:
        self._world = None

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> SyntheticSource:
        """The registry's factory: ``--n`` scenes from ``--seed``; ``--option`` sets WorldConfig fields (validated
        here, so a typo fails before any scene is rendered)."""
        from fourm_core.sources.synthetic import WorldConfig

        n = settings.require_n(cls.name)
        settings.options_as(WorldConfig, cls.name, image_size=settings.image_size)
        return cls(n, settings.image_size, settings.seed, dict(settings.options))

    def _get_world(self) -> Any:
        if self._world is None:
            from fourm_core.sources.synthetic import SyntheticWorld, WorldConfig

            self._world = SyntheticWorld(WorldConfig(image_size=self.image_size, **self.options), seed=self.seed)
        return self._world

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_world"] = None  # rebuilt in each worker process
        return state

    def __len__(self) -> int:
        return self.n

    def arrays(self) -> tuple[ArraySpec, ...]:
        """Everything a scene provides, aligned at the store's image size."""
        return (
            ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3), description="shaded render"),
            ArraySpec(name="depth", dtype="float32", shape=("H", "W"), description="z-depth in metres, 0 = sky"),
            ArraySpec(name="normal", dtype="float16", shape=("H", "W", 3), description="camera-frame normals"),
            ArraySpec(name="albedo", dtype="float16", shape=("H", "W", 3), description="linear reflectance"),
            ArraySpec(name="semantic", dtype="int16", shape=("H", "W"), description="panoptic index + 1"),
            ArraySpec(name="instances", dtype="int32", shape=("H", "W"), description="instance id, 0 = none"),
            ArraySpec(name="boxes", dtype="json", ragged=True, description="visible things with class names"),
            ArraySpec(name="humans", dtype="json", ragged=True, description="figures: joints, pose, shape, camera"),
            ArraySpec(name="caption", dtype="text", ragged=True, description="caption from the scene graph"),
            ArraySpec(name="scene_type", dtype="text", ragged=True, description="street, room, park, beach ..."),
            ArraySpec(name="objects", dtype="json", ragged=True, description="the scene graph"),
            ArraySpec(name="original_size", dtype="int32", shape=(2,), description="width, height"),
        )

    def record(self, index: int) -> dict[str, Any]:
        """Render scene ``index`` (deterministic in seed and index) as store fields."""
        scene = self._get_world()[index]
        return {
            "rgb": scene.rgb,
            "depth": scene.depth.astype(np.float32),
            "normal": scene.normal.astype(np.float16),
            "albedo": scene.albedo.astype(np.float16),
            "semantic": scene.semantic.astype(np.int16),
            "instances": scene.instances.astype(np.int32),
            "boxes": _jsonable(scene.boxes),
            "humans": _jsonable(scene.humans),
            "caption": scene.caption,
            "scene_type": scene.scene_type,
            "objects": _jsonable(scene.objects),
            "original_size": np.asarray(scene.original_size, np.int32),
        }

    def describe(self) -> dict[str, Any]:
        """Enough to regenerate the same samples."""
        return {"n": self.n, "image_size": self.image_size, "seed": self.seed, "options": self.options}


@dataclass
class PhotoSource:
    """A folder of photos (with optional sidecar captions) as a source: RGB, original size and caption only."""

    folder: str
    image_size: int
    crop: str = "center"
    name: str = "image_folder"
    options: dict[str, Any] = field(default_factory=dict)
    #: the file list a store recorded (names relative to the folder); None scans the folder
    files: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._folder = None

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> PhotoSource:
        """The registry's factory: the folder is the location; ``--option`` sets ImageFolderConfig fields (crop,
        max_pixels, resample ...), validated here."""
        from fourm_core.sources.image_folder import ImageFolderConfig

        folder = settings.require_location(cls.name)
        config = settings.options_as(ImageFolderConfig, cls.name, image_size=settings.image_size)
        options = {k: v for k, v in settings.options.items() if k != "crop"}
        return cls(str(folder), settings.image_size, config.crop, options=options)

    def _get_folder(self) -> Any:
        if self._folder is None:
            from fourm_core.sources.image_folder import ImageFolder

            self._folder = ImageFolder(self.folder, self.image_size, self.crop, files=self.files, **self.options)
        return self._folder

    def inventory(self) -> list[tuple[str, int, int]]:
        """Every file with its size and mtime, recorded by the store writer (a resume compares them)."""
        return list(self._get_folder().inventory())

    def pin(self, files: tuple[str, ...]) -> None:
        """Read exactly these files, in this order (the store's record), instead of scanning the folder."""
        self.files, self._folder = tuple(files), None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_folder"] = None
        return state

    def __len__(self) -> int:
        return len(self._get_folder())

    def arrays(self) -> tuple[ArraySpec, ...]:
        """What a photo gives: pixels, its original size, an optional caption, and where it came from."""
        return (
            ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3), description="resized and cropped photo"),
            ArraySpec(name="original_size", dtype="int32", shape=(2,), description="width, height before resizing"),
            # not "caption": a photo's sidecar may be missing, so the caption modality decides per photo (copy it, or
            # generate one) instead of copying a source field that is empty for some samples
            ArraySpec(
                name="sidecar_caption", dtype="text", ragged=True, description="sidecar .txt caption, '' if none"
            ),
            ArraySpec(name="key", dtype="text", ragged=True, description="path relative to the folder"),
            ArraySpec(name="notes", dtype="json", ragged=True, description="conversions applied on load"),
        )

    def record(self, index: int) -> dict[str, Any]:
        """Load photo ``index``; a bad file raises IngestError naming it."""
        rec = self._get_folder()[index]
        return {
            "rgb": rec.rgb,
            "original_size": np.asarray(rec.original_size, np.int32),
            "sidecar_caption": rec.caption or "",
            "key": rec.key,
            "notes": list(rec.notes),
        }

    def describe(self) -> dict[str, Any]:
        """The folder and loading options."""
        described = {"folder": str(Path(self.folder).resolve()), "image_size": self.image_size, "crop": self.crop}
        return {**described, "options": self.options} if self.options else described
