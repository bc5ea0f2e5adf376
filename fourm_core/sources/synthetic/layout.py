"""Scene types: each has its own ground and stuff classes, camera, lighting, typical things and where they may go.

A scene type is a function ``(rng, config) -> Stage`` that builds the stuff (ground, walls, buildings, sea,
mountains, trees ...); things are placed afterwards by :mod:`.placement` from the stage's priors and region. Types
differ in ground colour and texture, backdrop and typical objects, so a nearest-neighbour classifier on pixels tells
them apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fourm_core.sources.synthetic.config import WorldConfig
from fourm_core.sources.synthetic.shading import Lighting, to_linear
from fourm_core.sources.synthetic.stage import (
    UP,
    Stage,
    StuffPart,
    ahead,
    box,
    camera_yaw,
    cone,
    outdoor_light,
    plane,
    sample_camera,
    sphere,
)

__all__ = ["SCENE_TYPES"]

BUILDINGS = ((0.78, 0.7, 0.58), (0.62, 0.38, 0.3), (0.7, 0.7, 0.72), (0.88, 0.86, 0.8), (0.85, 0.78, 0.5))
WINDOW_GLASS = (0.2, 0.25, 0.33)
WALL_PAINT = ((0.9, 0.87, 0.78), (0.75, 0.85, 0.9), (0.8, 0.88, 0.78), (0.95, 0.95, 0.93), (0.9, 0.8, 0.72))
WOODS = ((0.6, 0.42, 0.25), (0.45, 0.3, 0.18), (0.72, 0.56, 0.38))
LEAVES = ((0.16, 0.42, 0.14), (0.22, 0.5, 0.18), (0.12, 0.35, 0.16))
BARK = (0.35, 0.24, 0.14)


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _round_trees(rng: np.random.Generator, yaw: float, n: int, near: float, far: float) -> list[StuffPart]:
    """Broadleaf trees (trunk + crown) scattered ahead of the camera, wider apart farther away."""
    out = []
    for _ in range(n):
        d = rng.uniform(near, far)
        x, z = ahead(yaw, d, rng.uniform(-1, 1) * (8 + d * 0.6))
        h, r = rng.uniform(1.6, 3.2), rng.uniform(1.0, 2.4)
        out.append(StuffPart(cone((x, 0, z), (x, h + 0.5 * r, z), 0.2, 0.15, BARK), "tree-merged", True))
        crown = sphere((x, h + r * 0.8, z), r, _pick(rng, LEAVES), "noise", 3.0, 0.45)
        out.append(StuffPart(crown, "tree-merged", True))
    return out


def _far_buildings(rng: np.random.Generator, yaw: float) -> list[StuffPart]:
    out = []
    for k in range(int(rng.integers(2, 5))):
        x, z = ahead(yaw, rng.uniform(90, 130), rng.uniform(-60, 60))
        h = rng.uniform(10, 30)
        facade = box(
            (x, h / 2, z), (rng.uniform(6, 12), h / 2, 6), BUILDINGS[k % 5], "windows", 0.45, 0.1, WINDOW_GLASS
        )
        out.append(StuffPart(facade, "building-other-merged"))
    return out


def street(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """A road between raised pavements and rows of buildings; cars on the road, street furniture on pavements."""
    road, walk = rng.uniform(3.5, 5.0), rng.uniform(2.5, 4.0)
    cam = sample_camera(rng, config, (1.4, 2.6), (2, 14), 0.3, x=rng.uniform(-0.6, 0.6) * road)
    # the road texture draws lane edges at ``scale`` metres from the centre line
    stuff = [StuffPart(plane(UP, 0.0, (0.3, 0.3, 0.32), "road", road - 0.3, 0.15, (0.9, 0.9, 0.85)), "road")]
    for side in (-1, 1):
        slab = box(
            (side * (road + walk / 2), 0.07, 70.0),
            (walk / 2, 0.07, 90.0),
            (0.64, 0.62, 0.58),
            "tiles",
            1.5,
            0.1,
            (0.45, 0.44, 0.42),
        )
        stuff.append(StuffPart(slab, "pavement-merged"))
        z = -12.0
        while z < 170:
            length, height = rng.uniform(6, 16), rng.uniform(5, 24)
            centre = (side * (road + walk + 5.0), height / 2, z + length / 2)
            facade = box(
                centre, (5.0, height / 2, length / 2), _pick(rng, BUILDINGS), "windows", 0.45, 0.1, WINDOW_GLASS
            )
            stuff.append(StuffPart(facade, "building-other-merged", True))
            z += length + (rng.uniform(0.5, 4) if rng.random() < 0.2 else 0.0)

    def region(label: str, x: float, z: float) -> bool:
        if label == "car":
            return abs(x) < road - 1.0
        if label == "person":
            return abs(x) < road + walk - 0.4
        return road + 0.3 < abs(x) < road + walk - 0.3

    return Stage(
        scene_type="street",
        ground="road",
        place="on a street",
        camera=cam,
        light=outdoor_light(rng, camera_yaw(cam)),
        stuff=stuff,
        priors={
            "car": 3,
            "bench": 1.5,
            "fire hydrant": 1.5,
            "potted plant": 1.2,
            "umbrella": 0.8,
            "suitcase": 1.0,
            "bottle": 0.4,
            "sports ball": 0.4,
        },
        poses={"standing": 3, "walking": 4, "waving": 1, "arms_raised": 0.5, "sitting_chair": 1},
        depth_range=(3.0, 15.0),
        region=region,
        ground_height=lambda x, z: 0.14 if road <= abs(x) <= road + walk else 0.0,
    )


def room(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """Four walls, floor and ceiling, windows, maybe a rug and a sideboard; furniture, a tv, things on tables."""
    width, depth, height = rng.uniform(5.0, 8.0), rng.uniform(6.5, 10.0), rng.uniform(2.6, 3.2)
    back, front = depth - 1.5, -1.5
    cam_x, cam_z = rng.uniform(-0.25, 0.25) * width, rng.uniform(-1.2, -0.7)
    cam = sample_camera(rng, config, (1.3, 1.9), (10, 26), 0.25, x=cam_x, z=cam_z)
    floor_kind = str(rng.choice(["floor-wood", "floor-other-merged"], p=[0.6, 0.4]))
    if floor_kind == "floor-wood":
        floor = plane(UP, 0.0, _pick(rng, WOODS), "planks", 5.0, 0.25)
    else:
        floor = plane(UP, 0.0, (0.82, 0.8, 0.76), "tiles", 2.0, 0.08, (0.55, 0.55, 0.55))
    wall_kind = str(rng.choice(["wall-other-merged", "wall-brick", "wall-wood"], p=[0.6, 0.2, 0.2]))
    wall_look = {
        "wall-brick": ((0.66, 0.36, 0.28), "bricks", 4.0, 0.2, (0.8, 0.78, 0.74)),
        "wall-wood": (_pick(rng, WOODS), "planks", 5.0, 0.2, None),
        "wall-other-merged": (_pick(rng, WALL_PAINT), "noise", 1.5, 0.05, None),
    }[wall_kind]
    stuff = [StuffPart(floor, floor_kind)]
    for normal, offset in (
        ((0, 0, -1.0), -back),
        ((1.0, 0, 0), -width / 2),
        ((-1.0, 0, 0), -width / 2),
        ((0, 0, 1.0), front),
    ):
        stuff.append(StuffPart(plane(normal, offset, *wall_look), wall_kind))
    stuff.append(StuffPart(plane((0, -1.0, 0), -height, (0.93, 0.93, 0.9), "noise", 1.0, 0.04), "ceiling-merged"))
    if rng.random() < 0.5:
        stuff.append(StuffPart(box((0.0, height - 0.03, back / 2), (0.35, 0.03, 0.35), (1.0, 1.0, 0.95)), "light"))
    has_rug = rng.random() < 0.55
    if has_rug:
        centre = (rng.uniform(-1, 1), 0.006, rng.uniform(2.0, back - 2.5))
        colour = _pick(rng, ((0.6, 0.15, 0.18), (0.2, 0.3, 0.6), (0.8, 0.7, 0.5), (0.25, 0.45, 0.3)))
        rug = box(centre, (rng.uniform(0.9, 1.8), 0.006, rng.uniform(0.7, 1.4)), colour, "checker", 2.5, 0.3)
        stuff.append(StuffPart(rug, "rug-merged"))
    for _ in range(int(rng.integers(0, 3))):
        side = int(rng.integers(3))
        w, h, y = rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.7), rng.uniform(1.3, 1.8)
        if side == 0:
            centre, half = (rng.uniform(-0.35, 0.35) * width, y, back - 0.02), (w, h, 0.02)
        else:
            centre, half = ((2 * side - 3) * (width / 2 - 0.02), y, rng.uniform(1.0, back - 1.5)), (0.02, h, w)
        pane = box(centre, half, (0.75, 0.87, 0.97), "grid", 2.2, 0.1, (0.95, 0.95, 0.95))
        stuff.append(StuffPart(pane, "window-other"))
    cabinet = None
    if rng.random() < 0.5:
        cw, ch, cx = rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.9), rng.uniform(-0.3, 0.3) * width
        cabinet = (cx, back - 0.25, cw, ch)
        sideboard = box((cx, ch / 2, back - 0.25), (cw, ch / 2, 0.25), _pick(rng, WOODS), "planks", 5.0, 0.15)
        stuff.append(StuffPart(sideboard, "cabinet-merged", True))

    def region(label: str, x: float, z: float) -> bool:
        if cabinet is not None and abs(x - cabinet[0]) < cabinet[2] + 0.5 and z > back - 1.2:
            return False
        return abs(x) < width / 2 - 0.6 and 0.8 < z < back - 0.6

    light_dir = np.array([rng.uniform(-0.5, 0.5), 1.0, rng.uniform(-0.7, 0.1)])
    light = Lighting(
        direction=light_dir / np.linalg.norm(light_dir),
        sun=np.array([0.95, 0.9, 0.8]) * rng.uniform(0.8, 1.0),
        sky_ambient=to_linear((0.68, 0.66, 0.62)),
        ground_ambient=to_linear((0.55, 0.5, 0.45)),
        zenith=to_linear((0.35, 0.55, 0.9)),
        horizon=to_linear((0.78, 0.86, 0.96)),
        haze=float("inf"),
    )
    return Stage(
        scene_type="room",
        ground="rug-merged" if has_rug else floor_kind,
        place="in a room",
        camera=cam,
        light=light,
        stuff=stuff,
        priors={
            "chair": 3,
            "dining table": 2.2,
            "tv": 1.0,
            "refrigerator": 0.7,
            "microwave": 0.5,
            "potted plant": 1.3,
            "vase": 0.6,
            "book": 0.6,
            "teddy bear": 1.0,
            "clock": 1.0,
            "sports ball": 0.3,
            "suitcase": 0.4,
        },
        poses={"standing": 2, "walking": 1, "waving": 1, "sitting_chair": 3},
        depth_range=(1.8, max(back - 0.5, 2.5)),
        region=region,
        walls=[
            (np.array([0.0, 0.0, back]), np.array([0.0, 0.0, -1.0]), width),
            (np.array([-width / 2, 0.0, back / 2]), np.array([1.0, 0.0, 0.0]), back),
            (np.array([width / 2, 0.0, back / 2]), np.array([-1.0, 0.0, 0.0]), back),
        ],
        table_items={
            "cup": 2,
            "bowl": 1.5,
            "bottle": 1.2,
            "cake": 1,
            "donut": 1,
            "apple": 1,
            "orange": 1,
            "book": 0.8,
            "vase": 0.8,
            "microwave": 0.2,
        },
        cabinet=cabinet,
    )


def park(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """Grass, a dirt path, trees, sometimes a skyline; benches, balls, frisbees and kites."""
    cam = sample_camera(rng, config, (1.4, 2.3), (2, 16), 0.5)
    yaw = camera_yaw(cam)
    stuff = [StuffPart(plane(UP, 0.0, (0.3, 0.52, 0.2), "grain", 7.0, 0.3), "grass-merged")]
    if rng.random() < 0.6:
        x, z = ahead(yaw, 30.0, rng.uniform(-4, 4))
        path = box(
            (x, 0.004, z),
            (rng.uniform(0.7, 1.4), 0.004, 60.0),
            (0.6, 0.5, 0.36),
            "grain",
            10.0,
            0.2,
            yaw=yaw + rng.uniform(-0.8, 0.8),
        )
        stuff.append(StuffPart(path, "dirt-merged"))
    stuff += _round_trees(rng, yaw, int(rng.integers(6, 14)), 12.0, 60.0)
    if rng.random() < 0.4:
        stuff += _far_buildings(rng, yaw)
    return Stage(
        scene_type="park",
        ground="grass-merged",
        place="in a park",
        camera=cam,
        light=outdoor_light(rng, yaw),
        stuff=stuff,
        priors={
            "bench": 2,
            "sports ball": 2,
            "frisbee": 1.2,
            "kite": 1.0,
            "umbrella": 0.6,
            "teddy bear": 0.8,
            "bottle": 0.4,
            "apple": 0.3,
            "potted plant": 0.3,
        },
        poses={"standing": 2, "walking": 2, "arms_raised": 1, "waving": 1, "sitting_ground": 1.5, "sitting_chair": 1},
        depth_range=(2.5, 11.0),
    )


def beach(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """Sand, the sea to the horizon, rocks and towels; umbrellas, balls, kites."""
    cam = sample_camera(rng, config, (1.4, 2.3), (0, 12), 0.4)
    yaw = camera_yaw(cam)
    shore = rng.uniform(14.0, 30.0)
    sx, sz = ahead(yaw, shore + 250.0, 0.0)
    sea = box((sx, -0.49, sz), (400.0, 0.51, 250.0), (0.1, 0.38, 0.58), "waves", 2.5, 0.5, (0.35, 0.62, 0.75), yaw=yaw)
    stuff = [StuffPart(plane(UP, 0.0, (0.88, 0.78, 0.56), "grain", 25.0, 0.14), "sand"), StuffPart(sea, "sea")]
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.5, 2.0)
        x, z = ahead(yaw, rng.uniform(8, shore), rng.uniform(-25, 25))
        stuff.append(StuffPart(sphere((x, -0.3 * r, z), r, (0.45, 0.43, 0.4), "noise", 2.0, 0.3), "rock-merged", True))
    for _ in range(int(rng.integers(0, 3))):
        colour = _pick(rng, ((0.9, 0.3, 0.3), (0.3, 0.5, 0.9), (0.95, 0.85, 0.3), (0.4, 0.8, 0.6)))
        x, z = ahead(yaw, rng.uniform(4, 12), rng.uniform(-5, 5))
        towel = box((x, 0.005, z), (0.45, 0.005, 0.9), colour, "checker", 4.0, 0.35, yaw=rng.uniform(-1, 1))
        stuff.append(StuffPart(towel, "towel"))
    return Stage(
        scene_type="beach",
        ground="sand",
        place="on a beach",
        camera=cam,
        light=outdoor_light(rng, yaw),
        stuff=stuff,
        priors={
            "umbrella": 2.5,
            "sports ball": 2,
            "frisbee": 1.0,
            "kite": 1.2,
            "suitcase": 0.6,
            "bottle": 0.8,
            "chair": 0.6,
            "teddy bear": 0.3,
            "orange": 0.3,
        },
        poses={"standing": 2, "walking": 2, "arms_raised": 1, "waving": 1, "sitting_ground": 2, "sitting_chair": 1},
        depth_range=(2.5, min(shore - 1.0, 12.0)),
    )


def snowfield(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """Snow, snow-capped mountains and pine trees; skis, benches, balls."""
    cam = sample_camera(rng, config, (1.4, 2.3), (0, 14), 0.5)
    yaw = camera_yaw(cam)
    stuff = [StuffPart(plane(UP, 0.0, (0.93, 0.95, 0.98), "grain", 9.0, 0.06), "snow")]
    for _ in range(int(rng.integers(3, 7))):
        x, z = ahead(yaw, rng.uniform(120, 240), rng.uniform(-220, 220))
        h, r = rng.uniform(30, 90), rng.uniform(60, 140)
        peak = cone((x, -5.0, z), (x, h, z), r, 0.0, (0.42, 0.45, 0.55), "snowcap", h * 0.55, 0.15, (0.95, 0.96, 1.0))
        stuff.append(StuffPart(peak, "mountain-merged"))
    for _ in range(int(rng.integers(4, 12))):
        d = rng.uniform(10, 55)
        x, z = ahead(yaw, d, rng.uniform(-1, 1) * (6 + d * 0.5))
        h, r = rng.uniform(3.0, 7.0), rng.uniform(0.9, 1.6)
        stuff.append(StuffPart(cone((x, 0, z), (x, 0.8, z), 0.15, 0.15, BARK), "tree-merged", True))
        pine = cone((x, 0.7, z), (x, 0.7 + h, z), r, 0.0, (0.1, 0.3, 0.16), "noise", 3.0, 0.3)
        stuff.append(StuffPart(pine, "tree-merged", True))
    return Stage(
        scene_type="snowfield",
        ground="snow",
        place="in the snow",
        camera=cam,
        light=outdoor_light(rng, yaw, snow=True),
        stuff=stuff,
        priors={
            "skis": 2,
            "sports ball": 0.8,
            "bench": 1.0,
            "suitcase": 0.6,
            "umbrella": 0.4,
            "teddy bear": 0.4,
            "bottle": 0.3,
            "kite": 0.5,
        },
        poses={"standing": 2, "walking": 2, "arms_raised": 1, "waving": 1, "sitting_ground": 0.5},
        depth_range=(2.5, 12.0),
    )


def playground(rng: np.random.Generator, config: WorldConfig) -> Stage:
    """A lined court behind a wire fence, sometimes a net, trees beyond; balls, frisbees, benches."""
    cam = sample_camera(rng, config, (1.4, 2.6), (3, 16), 0.35)
    yaw = camera_yaw(cam)
    colour = _pick(rng, ((0.25, 0.55, 0.3), (0.72, 0.38, 0.26), (0.22, 0.38, 0.62)))
    fence = rng.uniform(14.0, 24.0)
    court = plane(UP, 0.0, colour, "court", rng.uniform(6.0, 9.0), 0.12, (0.95, 0.95, 0.95))
    wire = box((0.0, 1.2, fence), (60.0, 1.2, 0.03), (0.35, 0.37, 0.38), "grid", 3.0, 0.1, (0.75, 0.78, 0.8))
    stuff = [StuffPart(court, "playingfield"), StuffPart(wire, "fence-merged")]
    if rng.random() < 0.5:
        z, turn = rng.uniform(7.0, fence - 4), rng.uniform(-0.3, 0.3)
        mesh = box((0.0, 1.0, z), (4.5, 0.4, 0.015), (0.1, 0.1, 0.1), "grid", 8.0, 0.1, (0.95, 0.95, 0.95), yaw=turn)
        stuff.append(StuffPart(mesh, "net"))
        for end in (-4.6, 4.6):
            x, zz = end * np.cos(turn), z - end * np.sin(turn)
            stuff.append(StuffPart(cone((x, 0, zz), (x, 1.45, zz), 0.05, 0.05, (0.6, 0.6, 0.6)), "net", True))
    stuff += _round_trees(rng, yaw, int(rng.integers(4, 10)), fence + 3, 60.0)
    return Stage(
        scene_type="playground",
        ground="playingfield",
        place="on a playing field",
        camera=cam,
        light=outdoor_light(rng, yaw),
        stuff=stuff,
        priors={
            "sports ball": 3,
            "frisbee": 1.5,
            "bench": 1.5,
            "bottle": 0.8,
            "kite": 0.5,
            "umbrella": 0.3,
            "suitcase": 0.3,
        },
        poses={"standing": 2, "walking": 2, "arms_raised": 1.5, "waving": 1, "sitting_ground": 1},
        depth_range=(2.5, min(fence - 2.0, 12.0)),
    )


#: Scene types by name; each builds its stage from a generator and the world config.
SCENE_TYPES: dict[str, Callable[[np.random.Generator, WorldConfig], Stage]] = {
    "street": street,
    "room": room,
    "park": park,
    "beach": beach,
    "snowfield": snowfield,
    "playground": playground,
}
