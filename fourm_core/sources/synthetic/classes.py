"""Class vocabulary of the synthetic world: the 133 COCO-panoptic classes, in contiguous 0-based order, as data.

The semantic maps the world renders store ``index + 1`` (0 = unlabelled), the convention of the semseg modality.
The full table (``fourm_core.sources.coco``, shared with the det and semseg plugins) is used, not only what the world
renders, so a stored value can always be named.
"""

from __future__ import annotations

from fourm_core.sources.coco import PANOPTIC_CLASSES, STUFF_CLASSES, THING_CLASSES  # noqa: F401  (re-exported)

NUM_THINGS = len(THING_CLASSES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(PANOPTIC_CLASSES)}


def class_index(name: str) -> int:
    """Contiguous 0-based panoptic index of a class name (``KeyError`` names the bad class)."""
    try:
        return INDEX[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a COCO-panoptic class") from None


def semantic_value(name: str) -> int:
    """The value stored in semantic maps for a class: panoptic index + 1 (0 is unlabelled)."""
    return class_index(name) + 1


def is_thing(value: int) -> bool:
    """Whether a stored semantic value (index + 1) is one of the 80 thing classes."""
    return 1 <= value <= NUM_THINGS


def class_name(value: int) -> str:
    """Name of a stored semantic value; 0 is ``"unlabelled"``."""
    return "unlabelled" if value == 0 else PANOPTIC_CLASSES[value - 1]
