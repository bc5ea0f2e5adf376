"""A contact sheet of one or more scenes' modalities side by side, for people to look at (PIL only).

Columns: rgb, depth (inverse depth, colour-mapped), normals, semantic (a stable colour per class), instances,
albedo (display-encoded), boxes with labels on rgb, and 2D skeletons on rgb. Used to check by eye that the world
looks like plausible little scenes and that every modality lines up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fourm_core.sources.synthetic.humans import PARENTS
from fourm_core.sources.synthetic.world import Scene

__all__ = ["PANELS", "scene_grid_png", "scene_panels"]

PANELS = ("rgb", "depth", "normal", "semantic", "instances", "albedo", "boxes", "skeletons")


def _id_colours(ids: np.ndarray, seed: int) -> np.ndarray:
    """A stable pseudo-random colour per integer id (0 stays black)."""
    table = np.random.default_rng(seed).integers(40, 256, (max(int(ids.max()) + 1, 256), 3)).astype(np.uint8)
    table[0] = 0
    return table[ids]


def _depth_colours(depth: np.ndarray) -> np.ndarray:
    """Inverse depth through a blue-to-yellow ramp; the sky is black."""
    valid = depth > 0
    inv = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0)
    top = np.percentile(inv[valid], 99) if valid.any() else 1.0
    x = np.clip(inv / max(top, 1e-6), 0, 1)
    ramp = np.stack([x**0.7, 0.2 + 0.7 * x, 0.9 * (1 - x) + 0.1], -1)
    return (ramp * 255 * valid[..., None]).astype(np.uint8)


def scene_panels(scene: Scene, scale: int = 1) -> list[Image.Image]:
    """The eight panels of one scene, each ``scale`` times the image size (nearest-neighbour)."""
    size = scene.rgb.shape[0]
    big = size * scale

    def up(a: np.ndarray) -> Image.Image:
        return Image.fromarray(a).resize((big, big), Image.NEAREST)

    boxes = up(scene.rgb)
    draw = ImageDraw.Draw(boxes)
    for b in scene.boxes:
        xy = [b["xmin"] * big, b["ymin"] * big, b["xmax"] * big - 1, b["ymax"] * big - 1]
        draw.rectangle(xy, outline=(255, 255, 0))
        draw.text((xy[0] + 1, xy[1]), b["label"][:10], fill=(255, 255, 0))
    skeletons = up(scene.rgb)
    draw = ImageDraw.Draw(skeletons)
    for h in scene.humans:
        pts = np.asarray(h["joints_2d"]) * scale
        for j, p in enumerate(PARENTS):
            if p >= 0:
                left = j in (1, 4, 7, 10, 13, 16, 18, 20, 22)
                draw.line([tuple(pts[p]), tuple(pts[j])], fill=(255, 60, 200) if left else (60, 220, 255), width=1)
    normal = ((scene.normal * np.array([1, -1, -1]) + 1) * 127.5).astype(np.uint8)  # the usual x right, y up look
    normal[scene.depth == 0] = 0
    albedo = (np.clip(scene.albedo, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    return [
        up(scene.rgb),
        up(_depth_colours(scene.depth)),
        up(normal),
        up(_id_colours(scene.semantic.astype(np.int64), 7)),
        up(_id_colours(scene.instances.astype(np.int64), 11)),
        up(albedo),
        boxes,
        skeletons,
    ]


def scene_grid_png(scene: Scene | list[Scene], path: str | Path, scale: int = 1, captions: bool = False) -> Path:
    """Write one row per scene, one column per panel (:data:`PANELS`), to ``path`` (PNG). Returns the path.

    ``captions`` adds each scene's type and caption under its row.
    """
    scenes = [scene] if isinstance(scene, Scene) else list(scene)
    rows = [scene_panels(s, scale) for s in scenes]
    cell = rows[0][0].width
    text_h = 24 if captions else 0
    head = 12 if captions else 0
    grid = Image.new("RGB", (cell * len(PANELS), head + (cell + text_h) * len(rows)), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    if captions:
        for c, name in enumerate(PANELS):
            draw.text((c * cell + 3, 0), name, fill=(200, 200, 200))
    for r, panels in enumerate(rows):
        top = head + r * (cell + text_h)
        for c, panel in enumerate(panels):
            grid.paste(panel, (c * cell, top))
        if captions:
            text = f"[{scenes[r].scene_type}] {scenes[r].caption}"
            width = max(20, cell * len(PANELS) // 6)
            lines = [text[i : i + width] for i in range(0, len(text), width)][:2]
            for k, line in enumerate(lines):
                draw.text((4, top + cell + 1 + 11 * k), line, fill=(230, 230, 230))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    return path


def showcase(
    path: str | Path,
    size: int = 128,
    seed: int = 0,
    scene_types: tuple[str, ...] = ("street", "room", "beach", "snowfield"),
) -> Path:
    """The documentation picture: the first busy scene (people and several things) of each type, one row each."""
    from fourm_core.sources.synthetic.world import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(image_size=size), seed=seed)
    chosen: dict[str, Scene] = {}
    index = 0
    while len(chosen) < len(scene_types) and index < 500:
        s = world[index]
        if s.scene_type in scene_types and s.scene_type not in chosen and s.humans and len(s.boxes) >= 4:
            chosen[s.scene_type] = s
        index += 1
    return scene_grid_png([chosen[t] for t in scene_types if t in chosen], path, captions=True)


if __name__ == "__main__":
    import sys

    print(showcase(sys.argv[1] if len(sys.argv) > 1 else "docs/synthetic_world.png"))
