"""A picture of one scene's modalities side by side, for people to look at (PIL only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fourm_core.sources.synthetic.humans import PARENTS
from fourm_core.sources.synthetic.world import Scene


def _colour_ids(ids: np.ndarray) -> np.ndarray:
    """A stable pseudo-random colour per integer id (0 stays black)."""
    rng = np.random.default_rng(12345)
    table = rng.integers(40, 255, (int(ids.max()) + 1, 3)).astype(np.uint8)
    table[0] = 0
    return table[ids]


def _depth_colour(depth: np.ndarray) -> np.ndarray:
    valid = depth > 0
    inv = np.zeros_like(depth)
    inv[valid] = 1 / depth[valid]
    inv = inv / inv.max() if inv.max() > 0 else inv
    return (np.stack([inv, inv**0.5, 1 - inv], -1) * 255 * valid[..., None]).astype(np.uint8)


def scene_panels(scene: Scene) -> list[Image.Image]:
    """rgb, depth, normals, semantic, instances, albedo, boxes and skeletons on rgb."""
    size = scene.rgb.shape[0]
    boxes = Image.fromarray(scene.rgb).copy()
    draw = ImageDraw.Draw(boxes)
    for b in scene.boxes:
        draw.rectangle(
            [b["xmin"] * size, b["ymin"] * size, b["xmax"] * size - 1, b["ymax"] * size - 1], outline=(255, 255, 0)
        )
    for h in scene.humans:
        pts = h["joints_2d"]
        for j, p in enumerate(PARENTS):
            if p >= 0:
                draw.line([tuple(pts[p]), tuple(pts[j])], fill=(255, 0, 255))
    panels = [
        scene.rgb,
        _depth_colour(scene.depth),
        ((scene.normal + 1) * 127.5).astype(np.uint8),
        _colour_ids(scene.semantic.astype(np.int64)),
        _colour_ids(scene.instances.astype(np.int64)),
        (np.clip(scene.albedo, 0, 1) * 255).astype(np.uint8),
    ]
    return [Image.fromarray(p) for p in panels] + [boxes]


def scene_grid_png(scenes: list[Scene], path: str | Path) -> Path:
    """One row per scene, one column per modality panel."""
    rows = [scene_panels(s) for s in scenes]
    size = scenes[0].rgb.shape[0]
    grid = Image.new("RGB", (size * len(rows[0]), size * len(rows)))
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            grid.paste(panel, (c * size, r * size))
    path = Path(path)
    grid.save(path)
    return path
