"""User configuration of the synthetic world (pydantic, validated once; rendering never re-validates)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SCENE_TYPE_NAMES", "WorldConfig"]

#: Every scene type the world can build (see :mod:`.layout`).
SCENE_TYPE_NAMES: tuple[str, ...] = ("street", "room", "park", "beach", "snowfield", "playground")


class WorldConfig(BaseModel):
    """What scenes look like. Defaults are the tiny preset's (64 px); everything but ``image_size`` is a prior.

    The image size changes only the sampling of pixels, never the scene: the same seed renders the same layout at
    48, 64 or 224 px.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=8, le=4096, description="square image side in pixels")
    objects: tuple[int, int] = Field((3, 8), description="inclusive range of things per scene, people excluded")
    humans: tuple[int, int] = Field((0, 3), description="inclusive range of human figures per scene")
    scene_types: tuple[str, ...] = Field(SCENE_TYPE_NAMES, min_length=1, description="scene types drawn uniformly")
    shadows: bool = Field(True, description="hard shadows from the directional light")
    fov_degrees: tuple[float, float] = Field((50.0, 72.0), description="range of the camera's field of view")
    far: float = Field(300.0, gt=1.0, description="surfaces farther than this (metres) render as sky")

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        unknown = set(self.scene_types) - set(SCENE_TYPE_NAMES)
        if unknown:
            raise ValueError(f"unknown scene types {sorted(unknown)}; choose from {list(SCENE_TYPE_NAMES)}")
        for name in ("objects", "humans"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 <= min <= max, got {(lo, hi)}")
        if not 1.0 <= self.fov_degrees[0] <= self.fov_degrees[1] < 170.0:
            raise ValueError(f"fov_degrees must be an increasing range inside (1, 170), got {self.fov_degrees}")
        return self
