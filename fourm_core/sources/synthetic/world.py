"""The synthetic world: seeded scenes rendered on the CPU with exact, pixel-aligned ground truth for every modality.

``SyntheticWorld(WorldConfig(image_size=64), seed=0)[i]`` is a pure function of (seed, i, config): each scene draws
from its own numpy generator, so scenes can be rendered in any order and in any process. The layout never depends
on the image size, so one seed gives the same scene at 48 or 224 px.

Pipeline: scene type (:mod:`.layout`) -> :class:`~.stage.Stage` (camera, light, stuff) -> things placed on the
ground, on tables, on walls or in the air (:mod:`.placement`, :mod:`.objects`, :mod:`.humans`) -> one batched ray
cast (:mod:`.raycast`) -> albedo, shadows and shading (:mod:`.shading`) -> labels, boxes, human records and the
caption (:mod:`.caption`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fourm_core.sources.synthetic.camera import Camera
from fourm_core.sources.synthetic.caption import describe
from fourm_core.sources.synthetic.classes import semantic_value
from fourm_core.sources.synthetic.config import WorldConfig
from fourm_core.sources.synthetic.geometry import aabb
from fourm_core.sources.synthetic.humans import figure_record
from fourm_core.sources.synthetic.layout import SCENE_TYPES
from fourm_core.sources.synthetic.objects import Part
from fourm_core.sources.synthetic.placement import Thing, place_things
from fourm_core.sources.synthetic.raycast import Primitive, PrimitiveSet, shadowed, trace_camera
from fourm_core.sources.synthetic.shading import PALETTE, MaterialTable, albedo_at, encode_srgb, shade, sky_colour

__all__ = ["Scene", "SyntheticWorld", "WorldConfig", "render_scene"]

SKY = semantic_value("sky-other-merged")


@dataclass
class Scene:
    """One rendered scene; every image-shaped array is ``image_size`` square and pixel-aligned.

    ``semantic`` holds COCO-panoptic index + 1 (0 = unlabelled, never produced: the sky is labelled);
    ``instances`` holds 1..n for things, 0 for stuff; ``depth`` is metric z-depth, 0 on the sky; ``normal`` is in
    the camera frame (x right, y down, z forward), 0 on the sky; ``albedo`` is linear, the sky colour on the sky.
    """

    rgb: np.ndarray  # (S, S, 3) uint8
    depth: np.ndarray  # (S, S) float32
    normal: np.ndarray  # (S, S, 3) float32
    albedo: np.ndarray  # (S, S, 3) float32
    semantic: np.ndarray  # (S, S) int16
    instances: np.ndarray  # (S, S) int32
    boxes: list[dict[str, Any]]
    humans: list[dict[str, Any]]
    scene_type: str
    caption: str
    objects: list[dict[str, Any]]
    camera: dict[str, Any]
    original_size: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)


def _material(table: MaterialTable, part: Part, thing: Thing | None) -> int:
    if part.colour == "main":
        assert thing is not None
        srgb = PALETTE[thing.colour]
        texture = part.texture or thing.texture
    else:
        srgb = PALETTE[part.colour] if isinstance(part.colour, str) else part.colour
        texture = part.texture or "plain"
    return table.add(tuple(srgb), texture, part.tex_scale, part.amp, part.alt)


def _boxes(instances: np.ndarray, size: int) -> dict[int, tuple[tuple[float, float, float, float], int]]:
    """Visible-pixel box (image fractions, exclusive max) and pixel count of every instance in the image."""
    flat = instances.reshape(-1)
    idx = np.flatnonzero(flat)
    if len(idx) == 0:
        return {}
    ids = flat[idx]
    order = np.argsort(ids, kind="stable")
    ids, idx = ids[order], idx[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ys, xs = idx // size, idx % size
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    counts = np.diff(np.r_[starts, len(ids)])
    return {
        int(ids[s]): (
            (float(x0[k] / size), float(y0[k] / size), float((x1[k] + 1) / size), float((y1[k] + 1) / size)),
            int(counts[k]),
        )
        for k, s in enumerate(starts)
    }


def render_scene(seed: int, config: WorldConfig | None = None) -> Scene:
    """Sample and render one scene from ``seed`` (a non-negative int); the same seed and config give identical bytes."""
    config = config or WorldConfig()
    rng = np.random.default_rng(seed)
    scene_type = str(config.scene_types[int(rng.integers(len(config.scene_types)))])
    stage = SCENE_TYPES[scene_type](rng, config)
    things = place_things(rng, stage, config)
    camera, light, size = stage.camera, stage.light, config.image_size

    materials = MaterialTable()
    prims = []
    for s in stage.stuff:
        material = _material(materials, s.part, None)
        prims.append(Primitive(s.part.kind, s.part.params, material, semantic_value(s.semantic), 0, s.casts_shadow))
    for t in things:
        sem = semantic_value(t.label)
        prims += [Primitive(p.kind, p.params, _material(materials, p, t), sem, t.instance, True) for p in t.parts]
    pset = PrimitiveSet.compile(prims)

    dirs, zscale = camera.rays()
    hits = trace_camera(camera, pset, dirs, config.far)
    hit, pts, nrm = hits.hit, hits.points, hits.normals
    prim_hit = hits.prim[hit]
    albedo_hit = albedo_at(pts, pset.material[prim_hit], materials)
    in_shadow = np.zeros(len(hit), bool)
    if config.shadows and len(hit):
        lit = np.flatnonzero(light.direction @ nrm > 0)
        in_shadow[lit] = shadowed(pset, pts[:, lit], nrm[:, lit], light.direction)
    radiance = shade(albedo_hit, nrm, in_shadow, hits.t[hit], light)

    n = size * size
    albedo = sky_colour(dirs, light)
    image = albedo.copy()
    albedo[:, hit] = albedo_hit
    image[:, hit] = radiance
    depth = np.zeros(n, np.float32)
    depth[hit] = hits.t[hit] * zscale[hit]
    normal = np.zeros((3, n), np.float32)
    normal[:, hit] = camera.rotation.T @ nrm
    semantic = np.full(n, SKY, np.int16)
    semantic[hit] = pset.semantic[prim_hit]
    instances = np.zeros(n, np.int32)
    instances[hit] = pset.instance[prim_hit]
    instances = instances.reshape(size, size)

    visible = _boxes(instances, size)
    boxes = [
        {"xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "label": t.label, "score": 1.0, "instance": t.instance}
        for t in things
        if t.instance in visible
        for b in [visible[t.instance][0]]
    ]
    humans = []
    for t in things:
        if t.figure is not None and t.instance in visible:
            record = figure_record(t.figure, camera, visible[t.instance][0])
            record["instance"] = t.instance
            humans.append(record)
    graph = [_graph_entry(t, camera, visible) for t in things]
    caption = describe([g for g in graph if g["visible"]], scene_type, stage.place, rng)
    return Scene(
        rgb=encode_srgb(image).T.reshape(size, size, 3),
        depth=depth.reshape(size, size),
        normal=np.ascontiguousarray(normal.T).reshape(size, size, 3),
        albedo=albedo.T.astype(np.float32).reshape(size, size, 3),
        semantic=semantic.reshape(size, size),
        instances=instances,
        boxes=boxes,
        humans=humans,
        scene_type=scene_type,
        caption=caption,
        objects=graph,
        camera=camera.record(),
        original_size=(size, size),
        extras={
            "ground": stage.ground,
            "light_direction_camera": (camera.rotation.T @ light.direction).tolist(),
            "seed": int(seed),
        },
    )


def _graph_entry(t: Thing, camera: Camera, visible: dict) -> dict[str, Any]:
    """JSON-friendly scene-graph node: what, where (world and camera frame), how big, on what, and if seen."""
    bounds = [aabb(p.kind, np.array(p.params)[:, None]) for p in t.parts]
    lo = np.min([b[0][:, 0] for b in bounds], axis=0)
    hi = np.max([b[1][:, 0] for b in bounds], axis=0)
    centre = (lo + hi) / 2
    seen = visible.get(t.instance)
    entry = {
        "label": t.label,
        "instance": t.instance,
        "colour": t.colour,
        "primitive": t.primitive,
        "texture": t.texture,
        "position": [float(v) for v in t.position],
        "position_camera": [float(v) for v in camera.to_camera(centre)],
        "yaw": float(t.yaw),
        "size": [float(v) for v in hi - lo],
        "support": t.support,
        "on": t.on,
        "visible": seen is not None,
        "pixels": seen[1] if seen else 0,
        "box": list(seen[0]) if seen else None,
    }
    if t.figure is not None:
        entry["pose"] = t.figure.pose
    return entry


class SyntheticWorld:
    """An indexable, endless set of scenes: ``world[i]`` renders scene ``i`` of this world's seed.

    ``len(world)`` is ``length`` when given (so the world can stand in for a finite dataset; indices past it raise
    ``IndexError``); without it the world is unbounded and ``len`` raises ``TypeError``. Scenes are independent of
    each other: rendering scene 7 never requires rendering scenes 0..6.
    """

    def __init__(self, config: WorldConfig | None = None, seed: int = 0, length: int | None = None) -> None:
        self.config = config or WorldConfig()
        self.seed = int(seed)
        self.length = length

    def scene_seed(self, index: int) -> int:
        """The generator seed of scene ``index``: independent streams per (world seed, index)."""
        return int(np.random.SeedSequence([self.seed, int(index)]).generate_state(1, np.uint64)[0])

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("this SyntheticWorld is unbounded; pass length= to give it a size")
        return self.length

    def __getitem__(self, index: int) -> Scene:
        if index < 0 or (self.length is not None and index >= self.length):
            raise IndexError(f"scene index {index} out of range")
        return render_scene(self.scene_seed(index), self.config)
