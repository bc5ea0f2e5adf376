"""The 80 COCO object class names, the whole-word class tokens of the official 4M vocabulary (ids 4204..4283)."""

from fourm_core.plugin import THING_CLASSES

COCO_CLASSES: tuple[str, ...] = THING_CLASSES
