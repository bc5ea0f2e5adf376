"""Class vocabulary of the synthetic world: COCO-panoptic contiguous indices (0-based) of what it can render.

Stored semantic maps use ``index + 1`` (0 = unlabelled), the convention of the semseg modality. Only the classes the
world renders are listed; the full 133-class table belongs to the semseg plugin.
"""

from __future__ import annotations

THINGS: dict[str, int] = {
    "person": 0,
    "car": 2,
    "bench": 13,
    "umbrella": 25,
    "suitcase": 28,
    "sports ball": 32,
    "bottle": 39,
    "cup": 41,
    "apple": 47,
    "orange": 49,
    "donut": 54,
    "cake": 55,
    "chair": 56,
    "potted plant": 58,
    "dining table": 60,
    "tv": 62,
    "book": 73,
    "vase": 75,
    "teddy bear": 77,
}
STUFF: dict[str, int] = {
    "floor-wood": 87,
    "road": 100,
    "sand": 102,
    "sea": 103,
    "snow": 105,
    "tree-merged": 116,
    "sky-other-merged": 119,
    "pavement-merged": 123,
    "mountain-merged": 124,
    "grass-merged": 125,
    "building-other-merged": 129,
    "wall-other-merged": 131,
    "rug-merged": 132,
}
#: Words used in captions for stuff classes ("on a road", "in a room" ...).
PLACE_WORDS: dict[str, str] = {
    "road": "on a road",
    "pavement-merged": "on a pavement",
    "grass-merged": "on the grass",
    "sand": "on a beach",
    "snow": "in the snow",
    "floor-wood": "on a wooden floor",
    "rug-merged": "on a rug",
}

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.15),
    "white": (0.92, 0.92, 0.92),
    "black": (0.06, 0.06, 0.06),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.50, 0.15, 0.65),
    "grey": (0.50, 0.50, 0.50),
    "brown": (0.45, 0.28, 0.12),
    "pink": (0.95, 0.55, 0.70),
}


def semantic_value(name: str) -> int:
    """Stored semantic value (panoptic index + 1) of a thing or stuff class name."""
    return (THINGS[name] if name in THINGS else STUFF[name]) + 1
