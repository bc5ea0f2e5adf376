"""Box codec in the official 4M format.

``[{xmin: .1, ymin: .2, xmax: .5, ymax: .9, label: "person"}]`` <-> ``v0=100 v1=200 v2=500 v3=899 person``:
coordinates normalised to [0, 1] and written as ``round(x * 999)`` in the four value-token slots, boxes ordered by
distance of their top-left corner to the origin (ml-4m's default ``dist_to_orig``), scores below the threshold dropped.
Class names may have several words (``teddy bear``); the next ``v0=`` token ends a name.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fourm_core.plugin import (
    COORD_BINS,
    Corners,
    Grammar,
    Item,
    Repeat,
    Seq,
    SerializationError,
    TokenCursor,
    Words,
    coord_bin,
    parse_value_token,
    value_token,
    vocab_index,
)
from fourm_det.classes import COCO_CLASSES


class Box(BaseModel):
    """One detected object; coordinates are fractions of the image size."""

    model_config = ConfigDict(frozen=True)

    xmin: float = Field(ge=0, le=1)
    ymin: float = Field(ge=0, le=1)
    xmax: float = Field(ge=0, le=1)
    ymax: float = Field(ge=0, le=1)
    label: str = Field(min_length=1)
    score: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.xmax < self.xmin or self.ymax < self.ymin:
            raise ValueError(f"box corners out of order: ({self.xmin}, {self.ymin}) .. ({self.xmax}, {self.ymax})")
        return self


class DetSerializer:
    """Writes and reads the det string. ``order`` is ``dist_to_orig`` (official default), ``area``, ``score`` or
    ``random`` (uses the ``rng`` given to :meth:`serialize`). ``classes``: the names the grammar lets a model write
    (:meth:`grammar`; parsing reads any words)."""

    modality = "det"
    #: boxes are image coordinates: they follow the training crop (:meth:`crop`)
    spatial = True

    def __init__(
        self,
        threshold: float = 0.6,
        order: Literal["dist_to_orig", "area", "score", "random"] = "dist_to_orig",
        max_instances: int | None = None,
        classes: Sequence[str] = COCO_CLASSES,
    ) -> None:
        self.classes = tuple(classes)
        self.threshold = threshold
        self.order = order
        self.max_instances = max_instances

    def _boxes(self, value: Sequence[Box | dict]) -> list[Box]:
        boxes = []
        for i, item in enumerate(value):
            try:
                boxes.append(item if isinstance(item, Box) else Box.model_validate(item))
            except ValidationError as exc:
                raise SerializationError(self.modality, f"box {i}: {exc.errors()[0]['msg']} ({item!r})") from None
        return boxes

    def serialize(self, value: Sequence[Box | dict], rng: random.Random | None = None) -> str:
        """The det string of ``value`` (an empty string when no box passes the threshold)."""
        boxes = [b for b in self._boxes(value) if b.score >= self.threshold]
        if self.max_instances is not None:
            boxes = sorted(boxes, key=lambda b: -b.score)[: self.max_instances]
        if self.order == "dist_to_orig":
            # Sorted on the quantised corner (ml-4m sorts on the raw one) so that re-serialising a parsed string
            # reproduces it exactly; the two orders differ only for boxes within one bin of each other.
            boxes.sort(key=lambda b: coord_bin(b.xmin) ** 2 + coord_bin(b.ymin) ** 2)
        elif self.order == "area":
            boxes.sort(key=lambda b: -(b.xmax - b.xmin) * (b.ymax - b.ymin))
        elif self.order == "score":
            boxes.sort(key=lambda b: -b.score)
        elif rng is not None:
            rng.shuffle(boxes)
        parts = []
        for b in boxes:
            words = b.label.split()
            if not words or any(parse_value_token(w) is not None for w in words):
                # A blank name or a value-token word would make the string unreadable (the name ends at a v0=).
                raise SerializationError(self.modality, f"box label {b.label!r} must be words, not value tokens")
            coords = (b.xmin, b.ymin, b.xmax, b.ymax)
            parts.extend(value_token(slot, coord_bin(x, COORD_BINS)) for slot, x in enumerate(coords))
            parts.append(" ".join(words))
        return " ".join(parts)

    def crop(self, value: Sequence[Box | dict], settings: Sequence[float], image_size: int) -> list[Box]:
        """Boxes seen through the crop ``[top, left, h, w, flip]`` (pixels of an ``image_size`` image): clipped to
        the crop and renormalised to it, mirrored when flipped; boxes with less than a pixel inside are dropped."""
        top, left, h, w, flip = (float(v) for v in settings)
        out = []
        for b in self._boxes(value):
            x0 = min(max((b.xmin * image_size - left) / w, 0.0), 1.0)
            x1 = min(max((b.xmax * image_size - left) / w, 0.0), 1.0)
            y0 = min(max((b.ymin * image_size - top) / h, 0.0), 1.0)
            y1 = min(max((b.ymax * image_size - top) / h, 0.0), 1.0)
            if (x1 - x0) * w < 1 or (y1 - y0) * h < 1:
                continue
            if flip:
                x0, x1 = 1.0 - x1, 1.0 - x0
            out.append(b.model_copy(update={"xmin": x0, "xmax": x1, "ymin": y0, "ymax": y1}))
        return out

    def parse(self, text: str) -> list[Box]:
        """Boxes of a det string (scores are 1.0); malformed strings raise an error naming the token."""
        cursor = TokenCursor(self.modality, text)
        boxes = []
        while not cursor.done():
            start = cursor.pos
            coords = [cursor.value(slot)[1] / (COORD_BINS - 1) for slot in range(4)]
            label = cursor.words_until()
            if not label:
                raise cursor.fail("a class name after the v3= token")
            try:
                boxes.append(Box(xmin=coords[0], ymin=coords[1], xmax=coords[2], ymax=coords[3], label=" ".join(label)))
            except ValidationError as exc:
                raise SerializationError(
                    self.modality, f"at token {start}: box {len(boxes)}: {exc.errors()[0]['msg']}"
                ) from None
        return boxes

    def grammar(self, vocab: object) -> Grammar:
        """Boxes (``HasGrammar``): four corners with ``v2 >= v0`` and ``v3 >= v1`` (equal corners quantise a thin box),
        then one of the class names as the vocabulary encodes it; up to ``max_instances`` boxes, none allowed."""
        index = vocab_index(vocab)
        # a class name the vocabulary can only write with [UNK] is left out: no parser could read it back
        box = Seq(Corners(index, COORD_BINS - 1), Words(index, self.classes, skip_unknown=True))
        return Grammar(Repeat(Item(box), 0, self.max_instances), index)

    def labelled_boxes(self, value: Sequence[Box | dict], image_size: int = 0) -> list[tuple[tuple, str]]:
        """``LabelledBoxes`` (held-out COCO box AP, :mod:`fourm_core.evaluation.boxes`): the boxes this serializer
        writes for ``value`` (at or above the threshold; image fractions, so ``image_size`` is unused) with their
        class names as the vocabulary reads them back (lower case, single spaces)."""
        kept = [b for b in self._boxes(value) if b.score >= self.threshold]
        return [((b.xmin, b.ymin, b.xmax, b.ymax), " ".join(b.label.lower().split())) for b in kept]

    def example(self, rng: random.Random) -> list[Box]:
        """0..6 random boxes of COCO classes."""
        boxes = []
        for _ in range(rng.randint(0, 6)):
            x0, x1 = sorted(rng.random() for _ in range(2))
            y0, y1 = sorted(rng.random() for _ in range(2))
            boxes.append(
                Box(xmin=x0, ymin=y0, xmax=x1, ymax=y1, label=rng.choice(COCO_CLASSES), score=rng.uniform(0.6, 1.0))
            )
        return boxes
