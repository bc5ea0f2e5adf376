"""COCO-panoptic classes (80 things, then 53 stuff), contiguous 0-based indices as the 4M-21 paper uses them.

Stored semseg values are ``index + 1``; 0 means unlabelled. The walkable and countable index lists are the paper's
(appendix, "Semantic metadata"), used by the metadata plugins for walkability and objectness.
"""

from fourm_core.plugin import PANOPTIC_CLASSES as _PANOPTIC

PANOPTIC_CLASSES: tuple[str, ...] = _PANOPTIC
NUM_THINGS = 80

#: Paper indices (0-based) of walkable classes: floor-wood, gravel, playingfield, road, sand, snow, stairs,
#: floor-other, pavement, grass, dirt, rug.
WALKABLE = (87, 90, 97, 100, 102, 105, 106, 122, 123, 125, 126, 132)
#: Paper indices (0-based) counted for objectness (countable stuff as the paper lists it).
COUNTABLE = (
    87,
    90,
    96,
    97,
    98,
    99,
    100,
    101,
    102,
    103,
    105,
    106,
    109,
    110,
    111,
    112,
    113,
    117,
    118,
    119,
    122,
    123,
    124,
    125,
    126,
    129,
    131,
    132,
)
