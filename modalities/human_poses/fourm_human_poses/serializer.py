"""Human-pose codec in the official 4M-21 format.

Per person: ``human v0=xmin v1=ymin v2=xmax v3=ymax`` then four groups in random order (fixed order without an rng):
``pose`` + 8 codebook tokens (``v0=id`` below 512, ``v1=id-512`` above), ``global`` + 9 rotation entries,
``camera`` + 3 values, ``shape`` + 10 betas. People are space-joined; nobody gives ``none``.

Value encodings (ml-4m's ``HumanPoseTransform``): box ``round(x * 999)``; rotation entries in [-1, 1] as
``round(499.5 x + 499.5)``; betas in [-3, 3] as ``round(166.5 b + 499.5)``; camera in [-1, 19] as
``round(49.95 c + 49.95)``. fourm clips betas to [-3, 3] (ml-4m does not, and emits tokens beyond ``v0=999``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fourm_core.plugin import (
    Choice,
    Corners,
    Grammar,
    Item,
    Permutation,
    Repeat,
    Seq,
    SerializationError,
    TokenCursor,
    Tokens,
    Words,
    code_token,
    coord_bin,
    value_token,
    vocab_index,
)


@dataclass(frozen=True)
class _Affine:
    """``token = round(scale * clip(x, lo, hi) + offset)`` and back."""

    scale: float
    offset: float
    lo: float
    hi: float

    def encode(self, x: float) -> int:
        return int(round(self.scale * min(max(float(x), self.lo), self.hi) + self.offset))

    def decode(self, t: int) -> float:
        return (t - self.offset) / self.scale


ROTATION = _Affine(499.5, 499.5, -1.0, 1.0)
BETAS = _Affine(166.5, 499.5, -3.0, 3.0)
CAMERA = _Affine(49.95, 49.95, -1.0, 19.0)


class Human(BaseModel):
    """One person: box (fractions of the image), global orientation (3x3 rotation, row-major), pose codebook tokens,
    SMPL-style shape betas and weak-perspective camera."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    bbox: tuple[float, float, float, float]
    global_orient: tuple[float, ...] = Field(min_length=9, max_length=9)
    pose_tokens: tuple[int, ...] = Field(min_length=1)
    betas: tuple[float, ...] = Field(min_length=10, max_length=10)
    camera: tuple[float, ...] = Field(min_length=3, max_length=3)


class HumanPoseSerializer:
    """Writes and reads the human_poses string; ``pose_tokens`` is the pose tokenizer's token count (8)."""

    modality = "human_poses"
    #: boxes and 3D poses in image coordinates; no crop transform yet (mask tokens would need re-tokenising),
    #: so training leaves this modality out of samples whose crop is not the full image
    spatial = True

    def __init__(self, pose_tokens: int = 8) -> None:
        self.pose_tokens = pose_tokens

    def _humans(self, value: Sequence[Human | dict]) -> list[Human]:
        out = []
        for i, item in enumerate(value):
            try:
                human = item if isinstance(item, Human) else Human.model_validate(item)
            except ValidationError as exc:
                raise SerializationError(
                    self.modality, f"human {i}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
                ) from None
            if len(human.pose_tokens) != self.pose_tokens:
                raise SerializationError(
                    self.modality, f"human {i}: expected {self.pose_tokens} pose tokens, got {len(human.pose_tokens)}"
                )
            if not all(0 <= t < 1024 for t in human.pose_tokens):
                raise SerializationError(
                    self.modality, f"human {i}: pose tokens must be codebook indices 0..1023, got {human.pose_tokens}"
                )
            out.append(human)
        return out

    def serialize(self, value: Sequence[Human | dict], rng: random.Random | None = None) -> str:
        """The human_poses string; group order is shuffled per person when ``rng`` is given."""
        humans = self._humans(value)
        if not humans:
            return "none"
        parts: list[str] = []
        for h in humans:
            parts.append("human")
            parts.extend(value_token(slot, coord_bin(x)) for slot, x in enumerate(h.bbox))
            groups = [
                ["pose", *(code_token(t) for t in h.pose_tokens)],
                ["global", *(value_token(0, ROTATION.encode(x)) for x in h.global_orient)],
                ["camera", *(value_token(0, CAMERA.encode(x)) for x in h.camera)],
                ["shape", *(value_token(0, BETAS.encode(x)) for x in h.betas)],
            ]
            if rng is not None:
                rng.shuffle(groups)
            for group in groups:
                parts.extend(group)
        return " ".join(parts)

    def from_store(self, row: dict, rng: random.Random | None = None) -> list[Human]:
        """The people of one stored sample with their pose tokens: ``row`` merges the raw part (``humans``) and
        the tokens part (``tokens``, one row of pose tokens per person) as ``StoreDataset(form="raw+tokens")``
        returns them."""
        humans = row.get("humans") or []
        tokens = row.get("tokens")
        if humans and tokens is None:
            raise SerializationError(self.modality, "no pose tokens: run `fourm data tokenize` first")
        if humans and len(tokens) != len(humans):
            raise SerializationError(self.modality, f"{len(humans)} people but {len(tokens)} rows of pose tokens")
        return [
            Human(
                bbox=tuple(h["bbox"]),
                global_orient=tuple(h["global_orient"]),
                pose_tokens=tuple(int(t) for t in tokens[i]),
                betas=tuple(h["betas"]),
                camera=tuple(h["camera"]),
            )
            for i, h in enumerate(humans)
        ]

    def parse(self, text: str) -> list[Human]:
        """People of a human_poses string; each group must appear exactly once per person, in any order."""
        cursor = TokenCursor(self.modality, text)
        if cursor.done():
            raise cursor.fail("'none' or a 'human' record")
        if cursor.peek() == "none":
            cursor.word()
            if not cursor.done():
                raise cursor.fail("nothing after 'none'")
            return []
        humans = []
        while not cursor.done():
            cursor.word("human")
            bbox = tuple(cursor.value(slot)[1] / 999 for slot in range(4))
            fields: dict[str, tuple] = {}
            seen: set[str] = set()
            for _ in range(4):
                keyword = cursor.peek()
                if keyword in seen or keyword not in ("pose", "global", "camera", "shape"):
                    raise cursor.fail("one of the groups pose/global/camera/shape not yet seen")
                seen.add(keyword)
                cursor.word()
                if keyword == "pose":
                    fields["pose_tokens"] = tuple(cursor.code() for _ in range(self.pose_tokens))
                elif keyword == "global":
                    fields["global_orient"] = tuple(ROTATION.decode(v) for v in cursor.values(0, 9))
                elif keyword == "camera":
                    fields["camera"] = tuple(CAMERA.decode(v) for v in cursor.values(0, 3))
                else:
                    fields["betas"] = tuple(BETAS.decode(v) for v in cursor.values(0, 10))
            humans.append(Human(bbox=bbox, **fields))  # type: ignore[arg-type]
        return humans

    def grammar(self, vocab: object, codebook: int | None = None) -> Grammar:
        """``none``, or people (``HasGrammar``): ``human``, a box with ``v2 >= v0`` and ``v3 >= v1``, then the four
        groups in any order, each exactly once with its exact token count (pose: codes below ``codebook``, the preset's
        pose tokenizer size, all 1024 when ``None``)."""
        index = vocab_index(vocab)
        values = Tokens(index.values(0))

        def group(word: str, tokens: Tokens, count: int) -> Seq:
            return Seq(Words(index, [word]), Repeat(tokens, count, count))

        groups = [
            group("pose", Tokens(index.codes(codebook)), self.pose_tokens),
            group("global", values, 9),
            group("camera", values, 3),
            group("shape", values, 10),
        ]
        person = Seq(Words(index, ["human"]), Corners(index), Permutation(groups, lo=len(groups)))
        return Grammar(Choice(Words(index, ["none"]), Repeat(Item(person), 1)), index)

    # -- ItemMatching (held-out evaluation matches people by box) --------------------------------------------------
    def item_boxes(
        self, value: Sequence[Human | dict], image_size: int = 0
    ) -> list[tuple[tuple[float, float, float, float], np.ndarray]]:
        """Each person's box (already image fractions; ``image_size`` is unused) and pose tokens, in order."""
        return [(tuple(float(v) for v in h.bbox), np.asarray(h.pose_tokens, np.int64)) for h in self._humans(value)]

    def truth_boxes(self, row: dict, image_size: int = 0) -> list[tuple[float, float, float, float]]:
        """The stored people's boxes, in the order of :func:`fourm_human_poses.tokenizing.pose_items`."""
        return [tuple(float(v) for v in h["bbox"]) for h in row.get("humans") or []]  # type: ignore[misc]

    def item_prefix(self, box: Sequence[float], image_size: int = 0) -> str:
        """``ItemPrompting``: the person queried by their box (image fractions; ``image_size`` unused), as the paper
        estimates a pose given the person's box: ``human``, the box, then ``pose``, so the pose tokens come next
        (one of the group orders training shows)."""
        return " ".join(["human", *(value_token(slot, coord_bin(x)) for slot, x in enumerate(box)), "pose"])

    def example(self, rng: random.Random) -> list[Human]:
        """0..3 random people."""
        humans = []
        for _ in range(rng.randint(0, 3)):
            x0, x1 = sorted(rng.random() for _ in range(2))
            y0, y1 = sorted(rng.random() for _ in range(2))
            humans.append(
                Human(
                    bbox=(x0, y0, x1, y1),
                    global_orient=tuple(rng.uniform(-1, 1) for _ in range(9)),
                    pose_tokens=tuple(rng.randrange(1024) for _ in range(self.pose_tokens)),
                    betas=tuple(rng.gauss(0, 1) for _ in range(10)),
                    camera=(rng.uniform(0.5, 10), rng.uniform(-1, 1), rng.uniform(-1, 1)),  # HMR2 [s, tx, ty]
                )
            )
        return humans
