"""Thing recipes: every rendered COCO thing class as a few primitives in its own frame, and where it may stand.

A recipe draws in object-local metres (x across, y up, z the object's front; the origin on its support surface);
:class:`Builder` rotates by the object's yaw, scales and moves it into the world. Composites are kept to a handful
of primitives because every primitive costs pixels-worth of intersection work. Sizes are a little oversized for
small things (fruit, cups, balls) so they stay visible in 64 px images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RECIPES", "Builder", "Part", "Recipe"]

Colour = str | tuple[float, float, float]  # "main", a palette name, or an explicit sRGB triple


@dataclass
class Part:
    """One primitive of a thing with its surface: ``colour`` "main" takes the object's palette colour."""

    kind: str
    params: tuple[float, ...]
    colour: Colour = "main"
    texture: str | None = None  # None: the object's main texture for "main" parts, plain otherwise
    tex_scale: float = 4.0
    amp: float = 0.2
    alt: tuple[float, float, float] | None = None  # second colour of two-colour textures (default: darker base)


def _rot_y(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@dataclass
class Builder:
    """Collects the parts of one object placed at ``position`` with ``yaw`` (radians) and uniform ``scale``."""

    position: np.ndarray
    yaw: float
    scale: float
    parts: list[Part] = field(default_factory=list)
    rotation: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rotation = _rot_y(self.yaw)
        self.position = np.asarray(self.position, np.float64)

    def at(self, local: tuple[float, float, float]) -> np.ndarray:
        """World point of an object-local point."""
        return self.position + self.rotation @ (np.asarray(local, np.float64) * self.scale)

    def _add(self, kind: str, params: list[float], colour: Colour, texture: str | None, **kw: float) -> None:
        self.parts.append(Part(kind, tuple(float(p) for p in params), colour, texture, **kw))

    def box(
        self,
        centre: tuple[float, float, float],
        half: tuple[float, float, float],
        colour: Colour = "main",
        texture: str | None = None,
        axes: np.ndarray | None = None,
        **kw: float,
    ) -> None:
        """An oriented box; ``axes`` (3x3, columns = local axes) adds a tilt inside the object's frame."""
        rot = self.rotation @ (axes if axes is not None else np.eye(3))
        params = [*self.at(centre), *(np.asarray(half) * self.scale), *rot[:, 0], *rot[:, 1], *rot[:, 2]]
        self._add("box", params, colour, texture, **kw)

    def sphere(
        self,
        centre: tuple[float, float, float],
        r: float,
        colour: Colour = "main",
        texture: str | None = None,
        **kw: float,
    ) -> None:
        """A sphere of radius ``r`` (scaled with the object)."""
        self._add("sphere", [*self.at(centre), r * self.scale], colour, texture, **kw)

    def cone(
        self,
        a: tuple[float, float, float],
        b: tuple[float, float, float],
        ra: float,
        rb: float,
        colour: Colour = "main",
        texture: str | None = None,
        **kw: float,
    ) -> None:
        """A capped frustum from ``a`` (radius ``ra``) to ``b`` (radius ``rb``); a cylinder when they are equal."""
        self._add("cone", [*self.at(a), *self.at(b), ra * self.scale, rb * self.scale], colour, texture, **kw)

    def cylinder(
        self,
        a: tuple[float, float, float],
        b: tuple[float, float, float],
        r: float,
        colour: Colour = "main",
        texture: str | None = None,
        **kw: float,
    ) -> None:
        """A capped cylinder from ``a`` to ``b`` (any axis: car wheels lie on their side)."""
        self.cone(a, b, r, r, colour, texture, **kw)

    def capsule(
        self,
        a: tuple[float, float, float],
        b: tuple[float, float, float],
        r: float,
        colour: Colour = "main",
        texture: str | None = None,
        **kw: float,
    ) -> None:
        """A cylinder with hemispherical ends (limbs, a kite's tail)."""
        self._add("capsule", [*self.at(a), *self.at(b), r * self.scale], colour, texture, **kw)

    def torus(
        self,
        centre: tuple[float, float, float],
        axis: tuple[float, float, float],
        major: float,
        minor: float,
        colour: Colour = "main",
        texture: str | None = None,
        **kw: float,
    ) -> None:
        """A torus around ``axis`` (object frame) with ring radius ``major`` and tube radius ``minor``."""
        ax = self.rotation @ np.asarray(axis, np.float64)
        ax /= np.linalg.norm(ax)
        self._add("torus", [*self.at(centre), *ax, major * self.scale, minor * self.scale], colour, texture, **kw)


@dataclass(frozen=True)
class Recipe:
    """How to build a class, its footprint radius (metres, before scale), colours and where it may stand."""

    build: Callable[[Builder, np.random.Generator], None]
    footprint: float
    colours: tuple[str, ...]
    places: tuple[str, ...] = ("ground",)  # ground | table | wall | air
    primitive: str = "composite"  # the main primitive kind, for the scene graph
    scale: tuple[float, float] = (0.9, 1.15)
    most: int = 6  # at most this many per scene (one fridge, one clock ...)


ALL = ("red", "green", "blue", "yellow", "white", "black", "orange", "purple", "grey", "brown", "pink")
WOOD = (0.55, 0.36, 0.2)
DARK = (0.08, 0.08, 0.09)
GLASS = (0.12, 0.16, 0.22)


def _sports_ball(b: Builder, rng: np.random.Generator) -> None:
    r = rng.uniform(0.16, 0.3)
    b.sphere((0, r, 0), r, texture="checker" if rng.random() < 0.4 else None, tex_scale=1 / r, amp=0.35)


def _fruit(radius: float) -> Callable[[Builder, np.random.Generator], None]:
    def build(b: Builder, rng: np.random.Generator) -> None:
        b.sphere((0, radius, 0), radius, texture="grain", tex_scale=60.0, amp=0.12)
        if radius < 0.12:  # apples get a stem
            b.cylinder((0, 2 * radius - 0.01, 0), (0, 2 * radius + 0.035, 0), 0.008, colour=(0.35, 0.22, 0.1))

    return build


def _car(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.62, 0), (0.88, 0.3, 2.0), texture="plain")
    b.box((0, 1.16, -0.25), (0.78, 0.25, 1.1), colour=GLASS, texture="stripes", tex_scale=6, amp=0.3)
    for sx in (-1, 1):
        for sz in (-1.3, 1.3):
            b.cylinder((sx * 0.96, 0.34, sz), (sx * 0.74, 0.34, sz), 0.34, colour=DARK)


def _bench(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.45, 0), (0.9, 0.035, 0.23), texture="planks", tex_scale=9, amp=0.15)
    b.box((0, 0.78, -0.22), (0.9, 0.15, 0.025), texture="planks", tex_scale=9, amp=0.15)
    for sx in (-0.78, 0.78):
        b.box((sx, 0.22, 0), (0.04, 0.22, 0.21), colour=DARK)


def _chair(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.46, 0), (0.24, 0.03, 0.24))
    b.box((0, 0.76, -0.22), (0.24, 0.27, 0.025))
    for sx in (-0.2, 0.2):
        for sz in (-0.2, 0.2):
            b.box((sx, 0.22, sz), (0.025, 0.22, 0.025))


def _dining_table(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.74, 0), (0.8, 0.035, 0.5), texture="planks", tex_scale=6, amp=0.12)
    for sx in (-0.7, 0.7):
        for sz in (-0.4, 0.4):
            b.box((sx, 0.36, sz), (0.04, 0.36, 0.04))


def _tv(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.02, 0), (0.2, 0.02, 0.12), colour=DARK)
    b.box((0, 0.12, 0), (0.03, 0.1, 0.03), colour=DARK)
    b.box((0, 0.55, 0), (0.6, 0.36, 0.04))
    b.box((0, 0.56, 0.03), (0.56, 0.32, 0.02), colour=GLASS, texture="noise", tex_scale=3, amp=0.5)


def _refrigerator(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.9, 0), (0.4, 0.9, 0.35), texture="noise", tex_scale=1, amp=0.05)
    b.box((0.3, 1.1, 0.37), (0.02, 0.25, 0.02), colour=(0.7, 0.7, 0.72))


def _microwave(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.16, 0), (0.26, 0.16, 0.19), texture="noise", tex_scale=2, amp=0.05)
    b.box((-0.05, 0.16, 0.19), (0.16, 0.11, 0.01), colour=GLASS, texture="stripes", tex_scale=30, amp=0.3)


def _book(b: Builder, rng: np.random.Generator) -> None:
    n = int(rng.integers(1, 4))
    for k in range(n):
        b.box((0, 0.03 + 0.06 * k, 0), (0.13, 0.03, 0.18), texture="stripes", tex_scale=40, amp=0.25)


def _clock(b: Builder, rng: np.random.Generator) -> None:
    # on a wall: the object's front (local +z) faces into the room, its origin is on the wall
    b.cylinder((0, 0, 0), (0, 0, 0.05), 0.24)
    b.cylinder((0, 0, 0.05), (0, 0, 0.06), 0.2, colour="white")
    b.box((0.0, 0.06, 0.065), (0.012, 0.07, 0.006), colour=DARK)
    b.box((0.05, 0.0, 0.065), (0.06, 0.01, 0.006), colour=DARK)


def _vase(b: Builder, rng: np.random.Generator) -> None:
    h = rng.uniform(0.25, 0.4)
    b.cone((0, 0, 0), (0, h, 0), 0.08, 0.14, texture="stripes", tex_scale=12, amp=0.2)
    b.cone((0, h, 0), (0, h + 0.14, 0), 0.14, 0.06)


def _cup(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0, 0), (0, 0.16, 0), 0.08)
    b.torus((0.09, 0.085, 0), (0, 0, 1), 0.045, 0.013)


def _bowl(b: Builder, rng: np.random.Generator) -> None:
    b.cone((0, 0, 0), (0, 0.1, 0), 0.08, 0.16)


def _bottle(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0, 0), (0, 0.26, 0), 0.06)
    b.cone((0, 0.26, 0), (0, 0.34, 0), 0.06, 0.022)
    b.cylinder((0, 0.34, 0), (0, 0.42, 0), 0.022)


def _cake(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0, 0), (0, 0.16, 0), 0.2, texture="noise", tex_scale=12, amp=0.15)
    b.cylinder((0, 0.16, 0), (0, 0.19, 0), 0.19, colour="white")


def _donut(b: Builder, rng: np.random.Generator) -> None:
    b.torus((0, 0.05, 0), (0, 1, 0), 0.1, 0.05, texture="grain", tex_scale=50, amp=0.2)


def _teddy_bear(b: Builder, rng: np.random.Generator) -> None:
    tex = {"texture": "grain", "tex_scale": 40.0, "amp": 0.15}
    b.sphere((0, 0.2, 0), 0.18, **tex)
    b.sphere((0, 0.46, 0.02), 0.13, **tex)
    b.sphere((0, 0.44, 0.14), 0.05, colour=(0.85, 0.75, 0.6))
    for sx in (-1, 1):
        b.sphere((sx * 0.1, 0.57, 0), 0.05, **tex)
        b.capsule((sx * 0.15, 0.27, 0.02), (sx * 0.24, 0.14, 0.1), 0.055, **tex)
        b.capsule((sx * 0.1, 0.06, 0.08), (sx * 0.12, 0.06, 0.22), 0.06, **tex)


def _potted_plant(b: Builder, rng: np.random.Generator) -> None:
    b.cone((0, 0, 0), (0, 0.32, 0), 0.13, 0.18)
    green = (0.16, 0.45 + 0.1 * rng.random(), 0.14)
    b.sphere((0, 0.62, 0), 0.3, colour=green, texture="noise", tex_scale=12, amp=0.4)
    b.sphere((0.14, 0.82, 0.05), 0.2, colour=green, texture="noise", tex_scale=12, amp=0.4)


def _umbrella(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0, 0), (0, 2.15, 0), 0.025, colour=(0.75, 0.75, 0.75))
    b.cone((0, 1.72, 0), (0, 2.18, 0), 1.0, 0.02, texture="stripes", tex_scale=8, amp=0.3)


def _suitcase(b: Builder, rng: np.random.Generator) -> None:
    b.box((0, 0.36, 0), (0.24, 0.32, 0.11), texture="stripes", tex_scale=7, amp=0.15)
    b.box((0, 0.72, 0), (0.08, 0.04, 0.015), colour=DARK)


def _frisbee(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0.0, 0), (0, 0.03, 0), 0.16)


def _kite(b: Builder, rng: np.random.Generator) -> None:
    tilt = rng.uniform(-0.5, 0.5)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    roll = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])  # a diamond: the square turned 45 degrees
    pitch = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    b.box((0, 0, 0), (0.42, 0.42, 0.01), axes=pitch @ roll, texture="checker", tex_scale=3, amp=0.35)
    b.capsule((0, -0.6, 0), (0.08, -1.3, 0), 0.02)


def _fire_hydrant(b: Builder, rng: np.random.Generator) -> None:
    b.cylinder((0, 0, 0), (0, 0.55, 0), 0.13)
    b.sphere((0, 0.55, 0), 0.13)
    b.cylinder((-0.2, 0.38, 0), (0.2, 0.38, 0), 0.06)


def _skis(b: Builder, rng: np.random.Generator) -> None:
    for sx in (-0.12, 0.12):
        b.box((sx, 0.015, 0), (0.045, 0.015, 0.85))


RECIPES: dict[str, Recipe] = {
    "car": Recipe(_car, 2.2, ("red", "blue", "white", "black", "grey", "yellow", "green", "orange"), scale=(0.95, 1.1)),
    "bench": Recipe(_bench, 1.0, ("brown", "green", "grey", "black", "white", "red", "blue")),
    "chair": Recipe(_chair, 0.4, ALL),
    "dining table": Recipe(_dining_table, 0.95, ("brown", "white", "black", "grey"), most=2),
    "tv": Recipe(_tv, 0.6, ("black", "grey", "white"), places=("ground", "table"), most=1),
    "refrigerator": Recipe(_refrigerator, 0.55, ("white", "grey", "black"), primitive="box", most=1),
    "microwave": Recipe(_microwave, 0.3, ("white", "grey", "black"), ("table",), "box", most=1),
    "book": Recipe(
        _book,
        0.25,
        ("red", "blue", "green", "yellow", "purple", "orange", "brown", "white"),
        ("table", "ground"),
        "box",
    ),
    "clock": Recipe(_clock, 0.3, ("white", "black", "red", "blue", "brown"), ("wall",), "cylinder", most=1),
    "vase": Recipe(_vase, 0.2, ALL, ("table", "ground"), "cone", scale=(0.9, 1.6)),
    "cup": Recipe(_cup, 0.15, ("white", "red", "blue", "yellow", "green", "black", "pink"), ("table",), "cylinder"),
    "bowl": Recipe(_bowl, 0.2, ("white", "blue", "red", "green", "yellow"), ("table",), "cone"),
    "bottle": Recipe(_bottle, 0.12, ("green", "brown", "blue", "white", "red"), ("table", "ground"), "cylinder"),
    "cake": Recipe(_cake, 0.25, ("white", "pink", "brown", "yellow"), ("table",), "cylinder"),
    "donut": Recipe(_donut, 0.18, ("brown", "pink", "white"), ("table",), "torus"),
    "apple": Recipe(_fruit(0.09), 0.12, ("red", "green", "yellow"), ("table", "ground"), "sphere"),
    "orange": Recipe(_fruit(0.1), 0.12, ("orange",), ("table", "ground"), "sphere"),
    "teddy bear": Recipe(_teddy_bear, 0.3, ("brown", "white", "pink", "yellow", "grey"), scale=(0.9, 1.5)),
    "potted plant": Recipe(_potted_plant, 0.35, ("brown", "orange", "white", "grey", "black", "red", "blue")),
    "umbrella": Recipe(_umbrella, 1.05, ALL, primitive="cone"),
    "suitcase": Recipe(_suitcase, 0.3, ("red", "blue", "green", "yellow", "black", "grey", "purple", "orange", "pink")),
    "frisbee": Recipe(_frisbee, 0.2, ALL, ("ground", "air"), "cylinder", scale=(1.0, 1.4)),
    "kite": Recipe(_kite, 0.5, ALL, ("air",), "box", scale=(1.0, 1.6)),
    "fire hydrant": Recipe(_fire_hydrant, 0.25, ("red", "yellow"), scale=(1.0, 1.2)),
    "skis": Recipe(_skis, 0.9, ("red", "blue", "yellow", "black", "white", "orange", "green"), primitive="box"),
    "sports ball": Recipe(_sports_ball, 0.3, ALL, ("ground", "air"), "sphere", scale=(1.0, 1.0)),
}
