"""Scene sampling: scene types with their own ground, backdrop and object priors, and objects built from primitives.

Sizes are those of a slightly oversized toy world, so objects stay visible at 64 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fourm_core.sources.synthetic.classes import COLOURS, semantic_value
from fourm_core.sources.synthetic.geometry import Primitive

SCENE_TYPES: dict[str, dict] = {
    "street": {
        "ground": "road",
        "side": "pavement-merged",
        "backdrop": "building-other-merged",
        "walls": False,
        "objects": ["car", "bench", "potted plant", "umbrella", "suitcase", "bottle"],
        "humans": (0, 3),
    },
    "room": {
        "ground": ("floor-wood", "rug-merged"),
        "backdrop": "wall-other-merged",
        "walls": True,
        "objects": ["chair", "dining table", "tv", "vase", "book", "potted plant", "teddy bear", "cake", "cup"],
        "humans": (0, 2),
    },
    "park": {
        "ground": "grass-merged",
        "backdrop": None,
        "trees": True,
        "walls": False,
        "objects": ["bench", "sports ball", "umbrella", "teddy bear", "apple", "potted plant"],
        "humans": (0, 3),
    },
    "beach": {
        "ground": "sand",
        "far": "sea",
        "backdrop": None,
        "walls": False,
        "objects": ["umbrella", "sports ball", "suitcase", "donut", "bottle", "orange"],
        "humans": (0, 3),
    },
    "snowfield": {
        "ground": "snow",
        "backdrop": "mountain-merged",
        "walls": False,
        "objects": ["sports ball", "bench", "suitcase", "umbrella", "cup"],
        "humans": (0, 2),
    },
}


@dataclass
class SceneObject:
    """A thing in the scene graph."""

    label: str
    colour: str
    position: np.ndarray
    size: float
    instance: int
    primitives: list[Primitive] = field(default_factory=list)


def _rgb(name: str) -> tuple[float, float, float]:
    return COLOURS[name]


def build_object(label: str, colour: str, pos: np.ndarray, yaw: float, scale: float, instance: int) -> list[Primitive]:
    """Primitives of one thing class at ``pos`` (on the ground), all sharing its instance id and class."""
    sem, c = semantic_value(label), _rgb(colour)
    x, z = float(pos[0]), float(pos[2])

    def box(cx: float, cy: float, cz: float, hx: float, hy: float, hz: float, col=c, tex="plain") -> Primitive:
        return Primitive(
            "box",
            {"centre": np.array([cx, cy, cz]), "half": np.array([hx, hy, hz]) * scale, "yaw": yaw},
            col,
            sem,
            instance,
            tex,
        )

    def cyl(r: float, h: float, y0: float = 0.0, col=c, dx: float = 0.0, dz: float = 0.0) -> Primitive:
        return Primitive(
            "cylinder",
            {"base": np.array([x + dx, y0, z + dz]), "radius": r * scale, "height": h * scale},
            col,
            sem,
            instance,
        )

    def sph(r: float, y: float, col=c, dx: float = 0.0, dz: float = 0.0) -> Primitive:
        return Primitive(
            "sphere", {"centre": np.array([x + dx, y * scale, z + dz]), "radius": r * scale}, col, sem, instance
        )

    s = scale
    if label in ("sports ball", "orange", "apple"):
        return [
            sph(
                {"sports ball": 0.35, "orange": 0.25, "apple": 0.25}[label],
                {"sports ball": 0.35, "orange": 0.25, "apple": 0.25}[label],
            )
        ]
    if label == "suitcase":
        return [box(x, 0.45 * s, z, 0.35, 0.45, 0.15, tex="stripes")]
    if label == "book":
        return [box(x, 0.08 * s, z, 0.3, 0.08, 0.22, tex="stripes")]
    if label == "tv":
        return [box(x, 0.6 * s, z, 0.55, 0.35, 0.06, col=_rgb("black")), box(x, 0.13 * s, z, 0.1, 0.13, 0.1)]
    if label in ("cup", "vase", "bottle", "cake"):
        r, h = {"cup": (0.18, 0.3), "vase": (0.2, 0.7), "bottle": (0.1, 0.7), "cake": (0.4, 0.35)}[label]
        parts = [cyl(r, h)]
        if label == "bottle":
            parts.append(cyl(0.05, 0.25, y0=0.7 * s))
        return parts
    if label == "donut":
        return [
            sph(0.13, 0.13, dx=0.3 * s * np.cos(a), dz=0.3 * s * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 9)[:-1]
        ]
    if label == "potted plant":
        return [cyl(0.2, 0.4, col=_rgb("brown")), sph(0.35, 0.75, col=_rgb("green"))]
    if label == "umbrella":
        return [cyl(0.04, 1.6, col=_rgb("grey")), cyl(0.9, 0.08, y0=1.6 * s)]
    if label == "teddy bear":
        return [sph(0.3, 0.3), sph(0.2, 0.75), sph(0.08, 0.95, dx=0.14 * s), sph(0.08, 0.95, dx=-0.14 * s)]
    if label == "chair":
        return [
            box(x, 0.45 * s, z, 0.3, 0.05, 0.3),
            box(x, 0.8 * s, z, 0.3, 0.35, 0.04),
            box(x, 0.2 * s, z, 0.22, 0.2, 0.22, col=_rgb("black")),
        ]
    if label == "dining table":
        return [box(x, 0.75 * s, z, 0.8, 0.05, 0.5, tex="stripes"), cyl(0.08, 0.72, col=_rgb("brown"))]
    if label == "bench":
        return [box(x, 0.45 * s, z, 0.9, 0.06, 0.25, tex="stripes"), box(x, 0.2 * s, z, 0.8, 0.2, 0.08)]
    if label == "car":
        return [
            box(x, 0.45 * s, z, 1.0, 0.3, 0.5),
            box(x, 0.95 * s, z, 0.6, 0.22, 0.45, col=_rgb("grey")),
            box(x, 0.12 * s, z, 0.9, 0.12, 0.52, col=_rgb("black")),
        ]
    raise ValueError(f"no primitive recipe for {label!r}")


def backdrop(kind: dict, rng: np.random.Generator, ground_name: str) -> list[Primitive]:
    """Ground plane, far ground (sea), walls and trees of a scene type."""
    prims = [
        Primitive(
            "plane",
            {"normal": np.array([0, 1.0, 0]), "offset": 0.0},
            (0, 0, 0),
            semantic_value(ground_name),
            texture="ground",
            casts_shadow=False,
        )
    ]
    if kind.get("side"):
        for sx in (-1, 1):  # pavements: raised slabs beside the road
            prims.append(
                Primitive(
                    "box",
                    {"centre": np.array([sx * 6.5, 0.05, 20.0]), "half": np.array([3, 0.05, 20]), "yaw": 0.0},
                    (0.6, 0.6, 0.58),
                    semantic_value(kind["side"]),
                    0,
                    "checker",
                    casts_shadow=False,
                )
            )
    if kind.get("far"):
        prims.append(
            Primitive(
                "box",
                {"centre": np.array([0, 0.02, 40.0]), "half": np.array([60, 0.02, 25]), "yaw": 0.0},
                (0.1, 0.35, 0.6),
                semantic_value(kind["far"]),
                0,
                "noise",
                casts_shadow=False,
            )
        )
    if kind.get("backdrop"):
        depth = 14.0 if kind.get("walls") else 30.0
        prims.append(
            Primitive(
                "plane",
                {"normal": np.array([0, 0, -1.0]), "offset": -depth},
                (0, 0, 0),
                semantic_value(kind["backdrop"]),
                texture="wall",
                casts_shadow=False,
            )
        )
    if kind.get("walls"):
        for sx in (-1, 1):
            prims.append(
                Primitive(
                    "plane",
                    {"normal": np.array([-sx, 0, 0.0]), "offset": -7.0},
                    (0, 0, 0),
                    semantic_value(kind["backdrop"]),
                    texture="wall",
                    casts_shadow=False,
                )
            )
    if kind.get("trees"):
        for _ in range(rng.integers(2, 6)):
            x, z = rng.uniform(-12, 12), rng.uniform(12, 28)
            h = rng.uniform(2, 4)
            sem = semantic_value("tree-merged")
            prims.append(
                Primitive(
                    "cylinder", {"base": np.array([x, 0, z]), "radius": 0.25, "height": h}, (0.35, 0.22, 0.1), sem
                )
            )
            prims.append(
                Primitive(
                    "sphere",
                    {"centre": np.array([x, h + 0.8, z]), "radius": rng.uniform(1.2, 2.0)},
                    (0.1, 0.45, 0.12),
                    sem,
                    texture="noise",
                )
            )
    return prims
