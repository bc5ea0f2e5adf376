"""Placing things: objects on the ground, on tables, on walls and in the air, then people standing or seated.

Placement samples ground spots inside the camera's view (so most things are seen), keeps footprints apart (things
never interpenetrate each other or solid stuff such as tree trunks), respects the scene type's region (cars on the
road, benches on the pavement, furniture inside the room) and per-class limits (one fridge), and records the
support graph (the cup is on the table, the person sits on the bench) that captions use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fourm_core.sources.synthetic.config import WorldConfig
from fourm_core.sources.synthetic.humans import Figure, pose_figure
from fourm_core.sources.synthetic.objects import RECIPES, Builder, Part
from fourm_core.sources.synthetic.stage import Stage

__all__ = ["Thing", "place_things"]

CLOTHES = ("red", "green", "blue", "yellow", "white", "black", "orange", "purple", "grey", "pink", "brown")
MAIN_TEXTURES = {"plain": 0.55, "noise": 0.25, "stripes": 0.1, "checker": 0.1}
SEATS = {"chair": ((0.0,), 0.49), "bench": ((-0.45, 0.45), 0.485)}  # local x of each seat, seat height (scale 1)


@dataclass
class Thing:
    """A node of the scene graph before rendering."""

    label: str
    colour: str
    primitive: str
    position: np.ndarray  # world point the thing stands on (or hangs at)
    yaw: float
    scale: float
    instance: int
    support: str  # ground | table | cabinet | wall | air | seat
    parts: list[Part]
    texture: str = "plain"
    on: int = 0  # instance id of the thing it stands or sits on
    figure: Figure | None = None
    seats_free: list[float] = field(default_factory=list)


class _Placer:
    """Samples free ground spots in view of the camera for one scene."""

    def __init__(self, rng: np.random.Generator, stage: Stage) -> None:
        self.rng, self.stage = rng, stage
        cam = stage.camera
        f = cam.rotation[:, 2]
        self.fwd = np.array([f[0], f[2]]) / np.hypot(f[0], f[2])
        r = cam.rotation[:, 0]
        self.right = np.array([r[0], r[2]]) / np.hypot(r[0], r[2])
        self.origin = np.array([cam.position[0], cam.position[2]])
        self.tan = cam.size / 2 / cam.fx
        self.taken: list[tuple[float, float, float]] = stage.obstacles()
        self.cabinet_used = False

    def spot(self, label: str, radius: float, depth: tuple[float, float] | None = None) -> np.ndarray | None:
        """A world point on the ground for a footprint of ``radius``, or None when the scene is full."""
        lo, hi = depth or self.stage.depth_range
        for _ in range(24):
            d = self.rng.uniform(lo, hi)
            lat = self.rng.uniform(-0.85, 0.85) * d * self.tan
            x, z = self.origin + self.fwd * d + self.right * lat
            if not self.stage.region(label, x, z):
                continue
            if any((x - a) ** 2 + (z - b) ** 2 < (radius + r) ** 2 for a, b, r in self.taken):
                continue
            self.taken.append((x, z, radius))
            return np.array([x, self.stage.ground_height(x, z), z])
        return None

    def facing_camera(self, position: np.ndarray, spread: float) -> float:
        """A yaw turning an object's front (local +z) roughly towards the camera."""
        to_cam = self.stage.camera.position - position
        return float(np.arctan2(to_cam[0], to_cam[2]) + self.rng.uniform(-spread, spread))


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _make_thing(
    rng: np.random.Generator, label: str, position: np.ndarray, yaw: float, instance: int, support: str
) -> Thing:
    recipe = RECIPES[label]
    scale = float(rng.uniform(*recipe.scale))
    colour = str(recipe.colours[int(rng.integers(len(recipe.colours)))])
    texture = _choice(rng, MAIN_TEXTURES)
    builder = Builder(position, yaw, scale)
    recipe.build(builder, rng)
    seats = list(SEATS[label][0]) if label in SEATS else []
    return Thing(
        label,
        colour,
        recipe.primitive,
        position,
        yaw,
        scale,
        instance,
        support,
        builder.parts,
        texture,
        seats_free=seats,
    )


def place_things(rng: np.random.Generator, stage: Stage, config: WorldConfig) -> list[Thing]:
    """Objects first (tables bring items on top), then people (standing, or sitting on free seats)."""
    placer = _Placer(rng, stage)
    things: list[Thing] = []
    budget = int(rng.integers(config.objects[0], config.objects[1] + 1))
    n_people = int(rng.integers(config.humans[0], config.humans[1] + 1))
    while budget > 0:
        budget -= 1
        label = _choice(rng, stage.priors)
        if sum(t.label == label for t in things) >= RECIPES[label].most:
            continue
        thing = _place_object(rng, placer, label, len(things) + 1)
        if thing is None:
            continue
        things.append(thing)
        if label == "dining table" and stage.table_items:
            items = _place_on_table(rng, stage, thing, min(int(rng.integers(1, 4)), budget), things)
            things += items
            budget -= len(items)
    for _ in range(n_people):
        person = _place_person(rng, placer, things, len(things) + 1)
        if person is not None:
            things.append(person)
    return things


def _place_object(rng: np.random.Generator, placer: _Placer, label: str, instance: int) -> Thing | None:
    """One object where its recipe allows: on the sideboard (tv), a wall (clock), in the air or on the ground."""
    stage, recipe, cam = placer.stage, RECIPES[label], placer.stage.camera
    on_top = label in ("tv", "microwave") and stage.cabinet is not None and not placer.cabinet_used
    if on_top and rng.random() < 0.8:
        placer.cabinet_used = True
        cx, cz, _, top = stage.cabinet
        return _make_thing(rng, label, np.array([cx, top, cz]), np.pi, instance, "cabinet")
    if not {"ground", "air", "wall"} & set(recipe.places):
        return None  # table-top things come with their tables
    if "wall" in recipe.places:
        if not stage.walls:
            return None
        point, normal, width = stage.walls[int(rng.integers(len(stage.walls)))]
        along = np.cross(normal, [0.0, 1.0, 0.0])
        pos = point + along * rng.uniform(-0.3, 0.3) * width + np.array([0.0, rng.uniform(1.7, 2.3), 0.0])
        return _make_thing(rng, label, pos, float(np.arctan2(normal[0], normal[2])), instance, "wall")
    air = "air" in recipe.places and ("ground" not in recipe.places or rng.random() < 0.3)
    # kites fly farther out, so they do not fill the view
    spot = placer.spot(label, recipe.footprint * recipe.scale[1], (6.0, 20.0) if label == "kite" else None)
    if spot is None:
        return None
    if air and label == "kite":
        # high, but inside the part of the view above the horizon
        d = float(np.hypot(*(spot[[0, 2]] - placer.origin)))
        pitch = float(np.arcsin(-cam.rotation[1, 2]))
        angle = rng.uniform(0.2, 0.8) * max(np.arctan(placer.tan) - pitch, 0.1)
        spot[1] = max(cam.position[1] + d * np.tan(angle), 2.5)
    elif air:
        spot[1] += rng.uniform(0.4, 1.8)
    if label == "car":  # along the road
        yaw = float(rng.choice([0.0, np.pi]) + rng.normal(0, 0.08))
    elif label in ("tv", "refrigerator"):
        yaw = placer.facing_camera(spot, 0.6)
    elif label == "bench" and stage.scene_type == "street":  # facing the road
        yaw = float(-np.sign(spot[0]) * np.pi / 2 + rng.normal(0, 0.05))
    else:
        yaw = float(rng.uniform(-np.pi, np.pi))
    return _make_thing(rng, label, spot, yaw, instance, "air" if air else "ground")


def _place_on_table(rng: np.random.Generator, stage: Stage, table: Thing, n: int, things: list[Thing]) -> list[Thing]:
    """Up to ``n`` small things on a dining table's top, apart from each other (``things``: those placed so far)."""
    instance = len(things) + 1
    top = 0.775 * table.scale
    used: list[tuple[float, float, float]] = []
    items: list[Thing] = []
    to_world = Builder(table.position, table.yaw, 1.0).rotation
    for _ in range(n):
        label = _choice(rng, stage.table_items)
        if sum(t.label == label for t in things + items) >= RECIPES[label].most:
            continue
        r = RECIPES[label].footprint * RECIPES[label].scale[1]
        for _ in range(10):
            u, v = rng.uniform(-0.6, 0.6) * table.scale, rng.uniform(-0.33, 0.33) * table.scale
            if all((u - a) ** 2 + (v - b) ** 2 >= (r + rr) ** 2 for a, b, rr in used):
                used.append((u, v, r))
                pos = table.position + to_world @ np.array([u, 0.0, v]) + np.array([0.0, top, 0.0])
                item = _make_thing(rng, label, pos, float(rng.uniform(-np.pi, np.pi)), instance + len(items), "table")
                item.on = table.instance
                items.append(item)
                break
    return items


def _place_person(rng: np.random.Generator, placer: _Placer, things: list[Thing], instance: int) -> Thing | None:
    """A figure in one of the scene type's poses: on a free chair or bench seat, or on a free ground spot."""
    pose = _choice(rng, placer.stage.poses)
    clothes = str(CLOTHES[int(rng.integers(len(CLOTHES)))])
    free = [t for t in things if t.seats_free]
    if pose == "sitting_chair" and free:
        seat = free[int(rng.integers(len(free)))]
        local_x = seat.seats_free.pop(int(rng.integers(len(seat.seats_free))))
        base = Builder(seat.position, seat.yaw, seat.scale).at((local_x, 0.0, 0.04))
        seat_height = SEATS[seat.label][1] * seat.scale + base[1]
        fig = pose_figure(rng, base, seat.yaw, pose, seat_height)
        support, on, position = "seat", seat.instance, base
    else:
        pose = "standing" if pose == "sitting_chair" else pose
        position = placer.spot("person", 0.75 if pose == "sitting_ground" else 0.35)
        if position is None:
            return None
        fig = pose_figure(rng, position, float(rng.uniform(-np.pi, np.pi)), pose)
        support, on = "ground", 0
    yaw = float(np.arctan2(fig.local[0][0, 2], fig.local[0][2, 2]))
    return Thing("person", clothes, "capsule", position, yaw, 1.0, instance, support, fig.parts, "plain", on, fig)
