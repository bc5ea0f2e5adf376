"""Class vocabulary of the synthetic world: the 133 COCO-panoptic classes, in contiguous 0-based order, as data.

The semantic maps the world renders store ``index + 1`` (0 = unlabelled), the convention of the semseg modality.
The full table lives here (not only what the world renders) so a stored value can always be named; the core may not
import a modality plugin, so this is a copy of the standard COCO order, checked against the semseg plugin by a test.
"""

from __future__ import annotations

#: The 80 COCO thing classes in the standard order (indices 0..79), spelled exactly as COCO spells them.
THING_CLASSES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
#: The 53 COCO-panoptic stuff classes (indices 80..132).
STUFF_CLASSES: tuple[str, ...] = (
    "banner",
    "blanket",
    "bridge",
    "cardboard",
    "counter",
    "curtain",
    "door-stuff",
    "floor-wood",
    "flower",
    "fruit",
    "gravel",
    "house",
    "light",
    "mirror-stuff",
    "net",
    "pillow",
    "platform",
    "playingfield",
    "railroad",
    "river",
    "road",
    "roof",
    "sand",
    "sea",
    "shelf",
    "snow",
    "stairs",
    "tent",
    "towel",
    "wall-brick",
    "wall-stone",
    "wall-tile",
    "wall-wood",
    "water-other",
    "window-blind",
    "window-other",
    "tree-merged",
    "fence-merged",
    "ceiling-merged",
    "sky-other-merged",
    "cabinet-merged",
    "table-merged",
    "floor-other-merged",
    "pavement-merged",
    "mountain-merged",
    "grass-merged",
    "dirt-merged",
    "paper-merged",
    "food-other-merged",
    "building-other-merged",
    "rock-merged",
    "wall-other-merged",
    "rug-merged",
)
#: All 133 classes; ``PANOPTIC_CLASSES[i]`` is the name of contiguous index ``i``.
PANOPTIC_CLASSES: tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
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
