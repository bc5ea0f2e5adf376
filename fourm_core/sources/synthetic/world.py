"""The synthetic world: seeded scenes rendered on the CPU with exact, aligned ground truth for every modality.

``SyntheticWorld(WorldConfig(image_size=64), seed=0)[i]`` is a deterministic function of (seed, i, config): each
scene draws from its own ``numpy`` generator seeded with both, so scenes can be rendered in any order, in any process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fourm_core.sources.synthetic.caption import describe
from fourm_core.sources.synthetic.classes import COLOURS, semantic_value
from fourm_core.sources.synthetic.geometry import Primitive, occluded, trace
from fourm_core.sources.synthetic.humans import build_figure, figure_record
from fourm_core.sources.synthetic.layout import SCENE_TYPES, SceneObject, backdrop, build_object

__all__ = ["Scene", "SyntheticWorld", "WorldConfig", "render_scene"]

SKY_TOP, SKY_HORIZON = np.array([0.25, 0.45, 0.85]), np.array([0.75, 0.85, 0.95])


class WorldConfig(BaseModel):
    """What scenes look like; every field has a sensible default for the tiny preset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=8, le=2048)
    objects: tuple[int, int] = (2, 6)
    scene_types: tuple[str, ...] = tuple(SCENE_TYPES)
    humans: bool = True
    shadows: bool = True
    fov_degrees: tuple[float, float] = (50.0, 70.0)


@dataclass
class Scene:
    """One rendered scene; every image-shaped array is ``image_size`` square and pixel-aligned."""

    rgb: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    boxes: list[dict[str, Any]]
    humans: list[dict[str, Any]]
    scene_type: str
    caption: str
    objects: list[dict[str, Any]]
    camera: dict[str, Any]
    original_size: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)


def _camera(rng: np.random.Generator, config: WorldConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Camera position, camera-to-world rotation (columns: right, down, forward) and focal length in pixels."""
    height = rng.uniform(1.2, 2.2)
    pitch = np.radians(rng.uniform(8, 22))
    yaw = np.radians(rng.uniform(-12, 12))
    forward = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))  # a right-handed camera: right x down = forward
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    fov = np.radians(rng.uniform(*config.fov_degrees))
    focal = config.image_size / 2 / np.tan(fov / 2)
    return np.array([0.0, height, 0.0]), np.stack([right, down, forward], axis=1), float(focal)


def _texture(kind: str, hit: np.ndarray, base: np.ndarray, ground: str) -> np.ndarray:
    """Procedural albedo: checkers, stripes and value noise by world position, so images are not flat."""
    x, y, z = hit[:, 0], hit[:, 1], hit[:, 2]
    if kind == "checker":
        return base * (0.85 + 0.15 * ((np.floor(x * 2) + np.floor(z * 2)) % 2))[:, None]
    if kind == "stripes":
        return base * (0.8 + 0.2 * (np.floor((x + y + z) * 6) % 2))[:, None]
    if kind == "noise":
        return base * (0.85 + 0.15 * np.sin(x * 3.1 + np.sin(z * 2.3) * 2) * np.cos(y * 2.7 + z))[:, None]
    return np.broadcast_to(base, hit.shape)


GROUND_COLOURS = {
    "road": (0.25, 0.25, 0.27),
    "floor-wood": (0.55, 0.38, 0.2),
    "rug-merged": (0.55, 0.15, 0.2),
    "grass-merged": (0.2, 0.5, 0.15),
    "sand": (0.85, 0.75, 0.5),
    "snow": (0.92, 0.94, 0.97),
}
BACKDROP_COLOURS = {
    "building-other-merged": (0.6, 0.5, 0.45),
    "wall-other-merged": (0.8, 0.78, 0.7),
    "mountain-merged": (0.45, 0.47, 0.55),
}


def _surface_albedo(prims: list[Primitive], which: np.ndarray, hit: np.ndarray, ground: str) -> np.ndarray:
    albedo = np.zeros((len(which), 3))
    for k in np.unique(which):
        sel = which == k
        prim = prims[k]
        if prim.texture == "ground":
            base = np.array(GROUND_COLOURS[ground])
            tex = "stripes" if ground == "floor-wood" else ("checker" if ground == "road" else "noise")
        elif prim.texture == "wall":
            base = np.array(next(BACKDROP_COLOURS[n] for n in BACKDROP_COLOURS if semantic_value(n) == prim.semantic))
            tex = "checker" if prim.semantic == semantic_value("building-other-merged") else "noise"
        else:
            base, tex = np.array(prim.colour), prim.texture
        albedo[sel] = _texture(tex, hit[sel], base, ground)
    return np.clip(albedo, 0, 1)


def _place(rng: np.random.Generator, taken: list[tuple[float, float, float]], radius: float) -> np.ndarray | None:
    for _ in range(20):
        x, z = rng.uniform(-4.5, 4.5), rng.uniform(3.5, 11.0)
        if all((x - a) ** 2 + (z - b) ** 2 > (radius + r) ** 2 for a, b, r in taken):
            taken.append((x, z, radius))
            return np.array([x, 0.0, z])
    return None


def render_scene(seed: int, config: WorldConfig | None = None) -> Scene:
    """Sample and render one scene from ``seed``."""
    config = config or WorldConfig()
    rng = np.random.default_rng(seed)
    size = config.image_size
    scene_type = str(rng.choice(list(config.scene_types)))
    kind = SCENE_TYPES[scene_type]
    ground = kind["ground"] if isinstance(kind["ground"], str) else str(rng.choice(kind["ground"]))
    prims = backdrop(kind, rng, ground)
    cam_pos, cam_rot, focal = _camera(rng, config)

    objects: list[SceneObject] = []
    taken: list[tuple[float, float, float]] = []
    instance = 0
    for _ in range(rng.integers(config.objects[0], config.objects[1] + 1)):
        label = str(rng.choice(kind["objects"]))
        scale = rng.uniform(0.8, 1.3)
        pos = _place(rng, taken, 1.1 * scale if label in ("car", "dining table", "bench") else 0.6 * scale)
        if pos is None:
            continue
        instance += 1
        colour = str(rng.choice(list(COLOURS)))
        parts = build_object(label, colour, pos, rng.uniform(-np.pi / 3, np.pi / 3), scale, instance)
        prims += parts
        objects.append(SceneObject(label, colour, pos, scale, instance, parts))
    figures = []
    if config.humans:
        for _ in range(rng.integers(kind["humans"][0], kind["humans"][1] + 1)):
            pos = _place(rng, taken, 0.5)
            if pos is None:
                continue
            instance += 1
            clothes = str(rng.choice(list(COLOURS)))
            fig = build_figure(
                rng, pos, rng.uniform(-np.pi, np.pi), instance, semantic_value("person"), COLOURS[clothes]
            )
            prims += fig.primitives
            figures.append((fig, clothes))
            objects.append(SceneObject("person", clothes, pos, 1.0, instance, fig.primitives))

    # primary rays through pixel centres; directions have camera z = 1, so the hit distance is the z-depth
    v, u = np.mgrid[0:size, 0:size] + 0.5
    cam_dirs = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1).reshape(-1, 3)
    dirs = cam_dirs @ cam_rot.T
    origins = np.broadcast_to(cam_pos, dirs.shape)
    t, which, normals_w = trace(origins, dirs, prims)
    hit_mask = which >= 0
    hit = cam_pos + dirs * np.where(hit_mask, t, 0)[:, None]
    normals_w[hit_mask] /= np.linalg.norm(normals_w[hit_mask], axis=1, keepdims=True)
    facing = np.einsum("ij,ij->i", normals_w, dirs) > 0
    normals_w[facing] *= -1

    albedo = np.zeros((size * size, 3))
    albedo[hit_mask] = _surface_albedo(prims, which[hit_mask], hit[hit_mask], ground)
    sun = np.array([rng.uniform(-0.6, 0.6), 1.0, rng.uniform(-0.8, -0.2)])
    sun /= np.linalg.norm(sun)
    lambert = np.clip(normals_w @ sun, 0, 1)
    if config.shadows and hit_mask.any():
        idx = np.flatnonzero(hit_mask & (lambert > 0))
        shadow = occluded(hit[idx] + normals_w[idx] * 1e-3, np.broadcast_to(sun, (len(idx), 3)), prims)
        lambert[idx[shadow]] = 0
    shade = 0.35 + 0.75 * lambert
    sky_t = np.clip(-cam_dirs[:, 1] / np.linalg.norm(cam_dirs, axis=1) * 1.5 + 0.5, 0, 1)[:, None]
    sky = SKY_HORIZON * (1 - sky_t) + SKY_TOP * sky_t
    colour = np.where(hit_mask[:, None], albedo * shade[:, None], sky)
    albedo[~hit_mask] = sky[~hit_mask]

    semantic = np.full(size * size, semantic_value("sky-other-merged"), np.int16)
    instances = np.zeros(size * size, np.int32)
    sem_table = np.array([p.semantic for p in prims], np.int16)
    inst_table = np.array([p.instance for p in prims], np.int32)
    semantic[hit_mask] = sem_table[which[hit_mask]]
    instances[hit_mask] = inst_table[which[hit_mask]]
    depth = np.where(hit_mask, t, 0).astype(np.float32)
    normal_cam = np.where(hit_mask[:, None], normals_w @ cam_rot, 0).astype(np.float32)

    instances = instances.reshape(size, size)
    boxes, visible = [], {}
    for obj in objects:
        ys, xs = np.nonzero(instances == obj.instance)
        if len(xs) == 0:
            continue
        box = (xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size)
        visible[obj.instance] = (box, len(xs))
        boxes.append(
            {
                "xmin": box[0],
                "ymin": box[1],
                "xmax": box[2],
                "ymax": box[3],
                "label": obj.label,
                "score": 1.0,
                "instance": obj.instance,
            }
        )
    humans = [
        figure_record(fig, cam_rot, cam_pos, focal, size / 2, size / 2, size, visible[inst][0])
        for (fig, _), inst in zip(figures, [o.instance for o in objects if o.label == "person"])
        if inst in visible
    ]
    visible_objects = [o for o in objects if o.instance in visible]
    graph = [
        {
            "label": o.label,
            "colour": o.colour,
            "instance": o.instance,
            "position": o.position.round(3).tolist(),
            "size": round(float(o.size), 3),
            "pixels": visible[o.instance][1],
            "box": [round(float(v), 4) for v in visible[o.instance][0]],
        }
        for o in visible_objects
    ]
    return Scene(
        rgb=(np.clip(colour, 0, 1).reshape(size, size, 3) * 255 + 0.5).astype(np.uint8),
        depth=depth.reshape(size, size),
        normal=normal_cam.reshape(size, size, 3),
        albedo=albedo.reshape(size, size, 3).astype(np.float32),
        semantic=semantic.reshape(size, size),
        instances=instances,
        boxes=boxes,
        humans=humans,
        scene_type=scene_type,
        caption=describe(graph, ground, scene_type, rng),
        objects=graph,
        camera={
            "fx": focal,
            "fy": focal,
            "cx": size / 2,
            "cy": size / 2,
            "position": cam_pos.tolist(),
            "rotation": cam_rot.round(6).tolist(),
        },
        original_size=(size, size),
    )


class SyntheticWorld:
    """An indexable, endless set of scenes: ``world[i]`` renders scene ``i`` of this world's seed."""

    def __init__(self, config: WorldConfig | None = None, seed: int = 0) -> None:
        self.config = config or WorldConfig()
        self.seed = seed

    def scene_seed(self, index: int) -> int:
        """The generator seed of scene ``index`` (independent streams per world seed and index)."""
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def __getitem__(self, index: int) -> Scene:
        if index < 0:
            raise IndexError(f"scene index must be >= 0, got {index}")
        return render_scene(self.scene_seed(index), self.config)
