"""SAM-instance codec in the official 4M-21 format.

For each query point (x, y) in pixels of the model's image: ``point v0=y v1=x`` (y first, as ml-4m writes it), then
``none`` or, for each instance containing the point, ``polygon v0=xmin v1=ymin v2=xmax v3=ymax`` (pixels) and the
instance's mask tokens (``v0=id`` below 512, ``v1=id-512`` above). With an ``rng``, points and the instances of each
point are shuffled, as ml-4m does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fourm_core.plugin import (
    Choice,
    Corners,
    Grammar,
    Item,
    Repeat,
    Seq,
    SerializationError,
    TokenCursor,
    Tokens,
    Words,
    code_token,
    value_token,
    vocab_index,
)


class Instance(BaseModel):
    """One instance: pixel box and mask codebook tokens."""

    model_config = ConfigDict(frozen=True)

    bbox: tuple[int, int, int, int] = Field(description="xmin, ymin, xmax, ymax in pixels (0..999)")
    tokens: tuple[int, ...] = Field(min_length=1)


class QueryPoint(BaseModel):
    """A query point and the instances whose mask contains it."""

    model_config = ConfigDict(frozen=True)

    x: int = Field(ge=0, le=999)
    y: int = Field(ge=0, le=999)
    instances: tuple[Instance, ...] = ()


class SamInstanceSerializer:
    """Writes and reads the sam_instance string; ``image_size`` bounds coordinates in examples."""

    modality = "sam_instance"
    #: query points, boxes and per-box mask tokens; no crop transform yet (mask tokens would need re-tokenising),
    #: so training leaves this modality out of samples whose crop is not the full image
    spatial = True

    def __init__(self, tokens_per_instance: int = 16, image_size: int = 224) -> None:
        self.tokens_per_instance = tokens_per_instance
        self.image_size = image_size

    def _points(self, value: Sequence[QueryPoint | dict]) -> list[QueryPoint]:
        points = []
        for i, item in enumerate(value):
            try:
                point = item if isinstance(item, QueryPoint) else QueryPoint.model_validate(item)
            except ValidationError as exc:
                raise SerializationError(
                    self.modality, f"point {i}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
                ) from None
            for j, inst in enumerate(point.instances):
                if len(inst.tokens) != self.tokens_per_instance:
                    raise SerializationError(
                        self.modality,
                        f"point {i} instance {j}: expected {self.tokens_per_instance} tokens, got {len(inst.tokens)}",
                    )
                if (
                    not all(0 <= c <= 999 for c in inst.bbox)
                    or inst.bbox[2] < inst.bbox[0]
                    or inst.bbox[3] < inst.bbox[1]
                ):
                    raise SerializationError(self.modality, f"point {i} instance {j}: bad box {inst.bbox}")
                if not all(0 <= t < 1024 for t in inst.tokens):
                    raise SerializationError(
                        self.modality,
                        f"point {i} instance {j}: mask tokens must be codebook indices 0..1023, got {inst.tokens}",
                    )
            points.append(point)
        return points

    def serialize(self, value: Sequence[QueryPoint | dict], rng: random.Random | None = None) -> str:
        """The sam_instance string of the query points."""
        points = self._points(value)
        if rng is not None:
            rng.shuffle(points)
        parts: list[str] = []
        for p in points:
            parts += ["point", value_token(0, p.y), value_token(1, p.x)]
            instances = list(p.instances)
            if rng is not None:
                rng.shuffle(instances)
            if not instances:
                parts.append("none")
            for inst in instances:
                parts.append("polygon")
                parts += [value_token(slot, c) for slot, c in enumerate(inst.bbox)]
                parts += [code_token(t) for t in inst.tokens]
        return " ".join(parts)

    def parse(self, text: str) -> list[QueryPoint]:
        """Query points of a sam_instance string."""
        cursor = TokenCursor(self.modality, text)
        points = []
        while not cursor.done():
            cursor.word("point")
            y = cursor.value(0)[1]
            x = cursor.value(1)[1]
            instances = []
            if cursor.peek() == "none":
                cursor.word()
            else:
                while cursor.peek() == "polygon":
                    cursor.word()
                    start = cursor.pos
                    bbox = tuple(cursor.value(slot)[1] for slot in range(4))
                    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
                        raise SerializationError(
                            self.modality,
                            f"at token {start}: polygon box corners out of order (xmin, ymin, xmax, ymax) = {bbox}",
                        )
                    tokens = tuple(cursor.code() for _ in range(self.tokens_per_instance))
                    instances.append(Instance(bbox=bbox, tokens=tokens))  # type: ignore[arg-type]
                if not instances:
                    raise cursor.fail("'none' or 'polygon' after a point")
            points.append(QueryPoint(x=x, y=y, instances=tuple(instances)))
        return points

    def grammar(self, vocab: object, codebook: int | None = None) -> Grammar:
        """Query points (``HasGrammar``): ``point v0=y v1=x``, then ``none`` or instances, each ``polygon``, a box with
        ``v2 >= v0`` and ``v3 >= v1`` and exactly ``tokens_per_instance`` mask tokens (codes below ``codebook``: the
        preset's mask tokenizer size, all 1024 when ``None``)."""
        index = vocab_index(vocab)
        codes = Tokens(index.codes(codebook))
        k = self.tokens_per_instance
        polygon = Seq(Words(index, ["polygon"]), Corners(index), Repeat(codes, k, k))
        found = Choice(Words(index, ["none"]), Repeat(Item(polygon), 1))
        point = Seq(Words(index, ["point"]), Tokens(index.values(0)), Tokens(index.values(1)), found)
        return Grammar(Repeat(point), index)

    def from_store(self, row: dict, rng: random.Random | None = None, max_points: int = 5) -> list[QueryPoint]:
        """Query points over one stored sample: ``row`` merges the raw part (``instances`` map, ``boxes``) and the
        tokens part (``tokens``, 16 per instance in box order), as ``StoreDataset(form="raw+tokens")`` returns them.

        With ``rng``: 1..``max_points`` points drawn uniformly over the image, as ml-4m samples SAM queries; a point
        on no instance gets ``none``. Without: one point per instance (the first ``max_points``), at its pixel
        nearest to the instance's centroid, so the string is deterministic."""
        instances = np.asarray(row["instances"])
        boxes = np.asarray(row["boxes"]).reshape(-1, 4)
        tokens = row.get("tokens")
        if len(boxes) and tokens is None:
            raise SerializationError(self.modality, "no mask tokens: run `fourm data tokenize` first")
        if len(boxes) and len(tokens) != len(boxes):
            raise SerializationError(self.modality, f"{len(boxes)} instances but {len(tokens)} rows of mask tokens")
        if rng is not None:
            h, w = instances.shape
            points = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randint(1, max_points))]
        else:
            points = []
            for i in range(1, min(len(boxes), max_points) + 1):
                ys, xs = np.nonzero(instances == i)
                if len(xs):
                    k = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
                    points.append((int(xs[k]), int(ys[k])))
        out = []
        for x, y in points:
            owner = int(instances[y, x])
            found = ()
            if 0 < owner <= len(boxes):
                box = tuple(int(v) for v in boxes[owner - 1])
                found = (Instance(bbox=box, tokens=tuple(int(t) for t in tokens[owner - 1])),)
            out.append(QueryPoint(x=x, y=y, instances=found))
        return out

    # -- ItemMatching (held-out evaluation matches instances by box) -----------------------------------------------
    def item_boxes(
        self, value: Sequence[QueryPoint | dict], image_size: int
    ) -> list[tuple[tuple[float, float, float, float], np.ndarray]]:
        """Every distinct instance (one found by several points is listed once), in order of first appearance: its
        pixel box (inclusive corners in an ``image_size`` image) as image fractions, and its mask tokens."""
        seen: dict[tuple, None] = {}
        for point in self._points(value):
            for inst in point.instances:
                seen.setdefault((inst.bbox, inst.tokens), None)
        return [(_fractions(bbox, image_size), np.asarray(tokens, np.int64)) for bbox, tokens in seen]

    def truth_boxes(self, row: dict, image_size: int) -> list[tuple[float, float, float, float]]:
        """The stored instances' boxes as image fractions, in the order of
        :func:`fourm_sam_instance.tokenizing.mask_items` (the ``boxes`` array)."""
        return [_fractions(tuple(int(v) for v in b), image_size) for b in np.asarray(row["boxes"]).reshape(-1, 4)]

    def item_prefix(self, box: Sequence[float], image_size: int) -> str:
        """``ItemPrompting``: the instance queried by its box, as the paper does: ``point`` at the box's centre pixel
        (the query a point on the instance would be), then ``polygon`` and the box in pixels; the model writes its
        mask tokens next. ``box``: image fractions as :meth:`truth_boxes` gives them (the inverse of its mapping)."""
        top = min(image_size, 1000) - 1
        x0, y0 = (min(max(round(v * image_size), 0), top) for v in box[:2])
        x1, y1 = (min(max(round(v * image_size) - 1, lo), top) for v, lo in zip(box[2:], (x0, y0), strict=True))
        corners = [value_token(slot, c) for slot, c in enumerate((x0, y0, x1, y1))]
        point = [value_token(0, (y0 + y1) // 2), value_token(1, (x0 + x1) // 2)]
        return " ".join(["point", *point, "polygon", *corners])

    def example(self, rng: random.Random) -> list[QueryPoint]:
        """1..5 random query points with 0..2 instances each (at most 225 tokens, inside the paper budget)."""
        s = self.image_size
        points = []
        for _ in range(rng.randint(1, 5)):
            instances = []
            for _ in range(rng.randint(0, 2)):
                x0, x1 = sorted(rng.randrange(s) for _ in range(2))
                y0, y1 = sorted(rng.randrange(s) for _ in range(2))
                tokens = tuple(rng.randrange(1024) for _ in range(self.tokens_per_instance))
                instances.append(Instance(bbox=(x0, y0, x1, y1), tokens=tokens))
            points.append(QueryPoint(x=rng.randrange(s), y=rng.randrange(s), instances=tuple(instances)))
        return points


def _fractions(bbox: Sequence[int], image_size: int) -> tuple[float, float, float, float]:
    """Inclusive pixel corners ``(xmin, ymin, xmax, ymax)`` as the box's extent in image fractions."""
    x0, y0, x1, y1 = bbox
    return (x0 / image_size, y0 / image_size, (x1 + 1) / image_size, (y1 + 1) / image_size)
