"""The stage of a scene: camera, light and stuff (ground, walls, backdrop), plus the rules for placing things.

Scene types (:mod:`.layout`) build a :class:`Stage`; placement (:mod:`.placement`) reads its priors, region and
obstacles. The small constructors here (``plane``, ``box``, ``cone``, ``sphere``) keep the scene-type code readable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fourm_core.sources.synthetic.camera import Camera, look_camera
from fourm_core.sources.synthetic.config import WorldConfig
from fourm_core.sources.synthetic.geometry import aabb
from fourm_core.sources.synthetic.objects import Part
from fourm_core.sources.synthetic.shading import Lighting, to_linear

__all__ = ["Stage", "StuffPart", "box", "camera_yaw", "cone", "outdoor_light", "plane", "sample_camera", "sphere"]

UP = (0.0, 1.0, 0.0)
RGB = tuple[float, float, float]


@dataclass
class StuffPart:
    """A primitive of the backdrop labelled with a stuff class (instance 0)."""

    part: Part
    semantic: str
    casts_shadow: bool = False


@dataclass
class Stage:
    """Everything about a scene except its things."""

    scene_type: str
    ground: str  # main ground stuff class
    place: str  # caption phrase: "on a street", "in a room" ...
    camera: Camera
    light: Lighting
    stuff: list[StuffPart]
    priors: dict[str, float]  # thing class -> relative frequency
    poses: dict[str, float]  # human pose family -> relative frequency
    depth_range: tuple[float, float]  # how far in front of the camera things stand (metres)
    region: Callable[[str, float, float], bool] = lambda label, x, z: True  # may ``label`` stand at (x, z)?
    ground_height: Callable[[float, float], float] = lambda x, z: 0.0
    walls: list[tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)  # (point, inward normal, width)
    table_items: dict[str, float] = field(default_factory=dict)  # what stands on tables (room)
    cabinet: tuple[float, float, float, float] | None = None  # x, z, half width, height of a sideboard (room)

    def obstacles(self) -> list[tuple[float, float, float]]:
        """Ground footprints ``(x, z, radius)`` of small solid stuff (trunks, rocks, posts) things must avoid."""
        out = []
        for s in self.stuff:
            if not s.casts_shadow:
                continue
            lo, hi = aabb(s.part.kind, np.asarray(s.part.params, np.float64)[:, None])
            lo, hi = lo[:, 0], hi[:, 0]
            half = (hi - lo) / 2
            if lo[1] < 0.5 and max(half[0], half[2]) < 4.0:
                # trees: the trunk matters, not the crown above head height
                out.append((float(lo[0] + half[0]), float(lo[2] + half[2]), float(min(max(half[0], half[2]), 1.5))))
        return out


def plane(normal: tuple[float, ...], offset: float, colour: RGB, texture="plain", scale=1.0, amp=0.1, alt=None) -> Part:
    """An infinite plane ``normal . x = offset``, seen from the side its normal points to."""
    return Part("plane", (*normal, offset), colour, texture, scale, amp, alt)


def box(centre, half, colour: RGB, texture="plain", scale=1.0, amp=0.1, alt=None, yaw=0.0) -> Part:
    """A box turned by ``yaw`` about the vertical."""
    c, s = np.cos(yaw), np.sin(yaw)
    axes = (c, 0.0, -s, 0.0, 1.0, 0.0, s, 0.0, c)
    return Part("box", (*centre, *half, *axes), colour, texture, scale, amp, alt)


def cone(a, b, ra: float, rb: float, colour: RGB, texture="plain", scale=1.0, amp=0.1, alt=None) -> Part:
    """A capped frustum from ``a`` (radius ``ra``) to ``b`` (radius ``rb``)."""
    return Part("cone", (*a, *b, ra, rb), colour, texture, scale, amp, alt)


def sphere(centre, r: float, colour: RGB, texture="plain", scale=1.0, amp=0.1) -> Part:
    return Part("sphere", (*centre, r), colour, texture, scale, amp)


def outdoor_light(rng: np.random.Generator, yaw: float, snow: bool = False) -> Lighting:
    """A sun mostly behind the camera (so lit faces are seen), a blue sky and distance haze."""
    elevation = rng.uniform(0.35, 1.1)
    azimuth = yaw + np.pi + rng.uniform(-1.6, 1.6)
    direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
    warm = rng.uniform(0.0, 0.12)
    return Lighting(
        direction=direction / np.linalg.norm(direction),
        sun=np.array([1.05, 1.0 - warm * 0.3, 0.92 - warm]) * rng.uniform(0.9, 1.1),
        sky_ambient=to_linear((0.55, 0.62, 0.75)) * (1.2 if snow else 1.0),
        ground_ambient=to_linear((0.45, 0.42, 0.38)),
        zenith=to_linear((0.30 + rng.uniform(-0.05, 0.1), 0.52 + rng.uniform(-0.05, 0.1), 0.92)),
        horizon=to_linear((0.85, 0.9, 0.97) if snow else (0.78, 0.86, 0.96)),
        haze=float(rng.uniform(150.0, 400.0)),
    )


def sample_camera(
    rng: np.random.Generator,
    config: WorldConfig,
    height: tuple[float, float],
    pitch_degrees: tuple[float, float],
    yaw_range: float = 0.3,
    x: float = 0.0,
    z: float = 0.0,
) -> Camera:
    """A level camera at (x, height, z), pitched down, turned by up to ``yaw_range`` radians."""
    fov = np.radians(rng.uniform(*config.fov_degrees))
    h = rng.uniform(*height)
    pitch = np.radians(rng.uniform(*pitch_degrees))
    yaw = rng.uniform(-yaw_range, yaw_range)
    return look_camera(config.image_size, np.array([x, h, z]), float(yaw), float(pitch), float(fov))


def camera_yaw(camera: Camera) -> float:
    """Heading of the camera's forward axis (0 = +z)."""
    f = camera.rotation[:, 2]
    return float(np.arctan2(f[0], f[2]))


def ahead(yaw: float, depth: float, lateral: float) -> tuple[float, float]:
    """World (x, z) ``depth`` metres ahead of the origin along ``yaw`` and ``lateral`` metres to the camera's right."""
    x = np.sin(yaw) * depth - np.cos(yaw) * lateral
    z = np.cos(yaw) * depth + np.sin(yaw) * lateral
    return float(x), float(z)
