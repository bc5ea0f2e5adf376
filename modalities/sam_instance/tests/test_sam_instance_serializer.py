"""The sam_instance string format (ml-4m ``SAMInstanceTokTransform``).

Per query point ``point v0=<y> v1=<x>`` (y first), then ``none`` or, per instance containing the point,
``polygon v0=xmin v1=ymin v2=xmax v3=ymax`` (pixels) and 16 mask tokens (``v0=id`` below 512, ``v1=id-512`` above).
An rng shuffles the points and the instances of each point.
"""

from __future__ import annotations

import random
import re

import pytest

from fourm_core.plugin import TextVocabulary
from fourm_core.testing.serializers import (
    assert_parse_error,
    assert_refused_when_writing,
    assert_token_soup_is_safe,
    value_id,
)
from fourm_sam_instance.serializer import Instance, QueryPoint, SamInstanceSerializer

KEYWORD_IDS = {"point": 6712, "polygon": 14445, "none": 18109}

TOKENS = (0, 1, 511, 512, 513, 1023, 7, 600, 8, 9, 10, 11, 12, 13, 14, 700)
TOKENS_TEXT = "v0=0 v0=1 v0=511 v1=0 v1=1 v1=511 v0=7 v1=88 v0=8 v0=9 v0=10 v0=11 v0=12 v0=13 v0=14 v1=188"
INSTANCE = Instance(bbox=(5, 6, 50, 60), tokens=TOKENS)


def official_id(token: str) -> int:
    return KEYWORD_IDS[token] if token in KEYWORD_IDS else value_id(token)


def instance(seed: int, tokens: int = 16) -> Instance:
    rng = random.Random(seed)
    x0, x1 = sorted(rng.randrange(224) for _ in range(2))
    y0, y1 = sorted(rng.randrange(224) for _ in range(2))
    return Instance(bbox=(x0, y0, x1, y1), tokens=tuple(rng.randrange(1024) for _ in range(tokens)))


def normalised(points: list[QueryPoint]) -> list[tuple]:
    """Order-free view: points sorted, instances of each point sorted."""
    return sorted((p.x, p.y, tuple(sorted((i.bbox, i.tokens) for i in p.instances))) for p in points)


# ---------------------------------------------------------------------------------------------------------- writing


def test_a_point_without_instances_is_y_then_x_then_none() -> None:
    assert SamInstanceSerializer().serialize([QueryPoint(x=30, y=10)]) == "point v0=10 v1=30 none"


def test_a_point_inside_an_instance_writes_its_pixel_box_and_16_mask_tokens() -> None:
    text = SamInstanceSerializer().serialize([QueryPoint(x=30, y=10, instances=(INSTANCE,))])
    assert text == f"point v0=10 v1=30 polygon v0=5 v1=6 v2=50 v3=60 {TOKENS_TEXT}"
    assert len(text.split()) == 3 + 1 + 4 + 16


def test_without_rng_points_and_instances_keep_their_order() -> None:
    a, b = instance(1), instance(2)
    points = [QueryPoint(x=200, y=100, instances=(a, b)), QueryPoint(x=0, y=223), QueryPoint(x=5, y=5, instances=(b,))]
    text = SamInstanceSerializer().serialize(points)
    assert re.findall(r"point v0=\d+ v1=\d+", text) == ["point v0=100 v1=200", "point v0=223 v1=0", "point v0=5 v1=5"]
    assert [t for t in text.split() if not t.startswith("v")] == [
        "point",
        "polygon",
        "polygon",
        "point",
        "none",
        "point",
        "polygon",
    ]
    assert text.index(f"v0={a.bbox[0]} v1={a.bbox[1]} v2={a.bbox[2]}") < text.index(
        f"v0={b.bbox[0]} v1={b.bbox[1]} v2={b.bbox[2]}"
    )


def test_rng_shuffles_points_and_instances_reproducibly() -> None:
    points = [QueryPoint(x=i, y=2 * i, instances=tuple(instance(10 * i + j) for j in range(i % 3))) for i in range(7)]
    ser = SamInstanceSerializer()
    canonical = ser.serialize(points)
    shuffled = {ser.serialize(points, random.Random(seed)) for seed in range(10)}
    assert len(shuffled) > 5 and canonical not in shuffled
    assert ser.serialize(points, random.Random(3)) == ser.serialize(points, random.Random(3))
    for text in shuffled:
        assert normalised(ser.parse(text)) == normalised(points)


def test_no_query_point_is_the_empty_string() -> None:
    ser = SamInstanceSerializer()
    assert ser.serialize([]) == ""
    assert ser.parse("") == []


def test_other_instance_token_counts() -> None:
    ser = SamInstanceSerializer(tokens_per_instance=4)
    text = ser.serialize([QueryPoint(x=1, y=2, instances=(Instance(bbox=(0, 0, 3, 3), tokens=(1, 2, 513, 4)),))])
    assert text == "point v0=2 v1=1 polygon v0=0 v1=0 v2=3 v3=3 v0=1 v0=2 v1=1 v0=4"
    assert ser.serialize(ser.parse(text)) == text


# ---------------------------------------------------------------------------------------------------- round trips


def test_parse_and_serialize_are_exact_inverses() -> None:
    ser = SamInstanceSerializer()
    for seed in range(30):
        points = ser.example(random.Random(seed))
        text = ser.serialize(points)
        assert ser.parse(text) == points, seed
        assert ser.serialize(ser.parse(text)) == text, seed
        assert normalised(ser.parse(ser.serialize(points, random.Random(seed)))) == normalised(points), seed


# --------------------------------------------------------------------------------------------------------- errors

MASK = " ".join(["v0=1"] * 16)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("point v0=1 v1=2", 3),  # 'point' without 'none' / 'polygon'
        ("point v0=1 v1=2 point v0=3 v1=4 none", 3),
        ("point v0=1 v1=2 v0=5", 3),
        ("point v1=2 v0=1 none", 1),  # x and y slots swapped
        ("point v0=1 none", 2),
        ("none", 0),
        ("polygon v0=1 v1=2 v2=3 v3=4 " + MASK, 0),  # no point first
        ("point v0=1 v1=2 none none", 4),
        ("point v0=1 v1=2 none polygon v0=1 v1=2 v2=3 v3=4 " + MASK, 4),
        ("point v0=1 v1=2 polygon v0=1 v1=2 v2=3 " + MASK, 7),  # box without v3
        ("point v0=1 v1=2 polygon v0=1 v1=2 v2=3 v3=4 " + " ".join(["v0=1"] * 15), 23),  # mask token missing
        ("point v0=1 v1=2 polygon v0=1 v1=2 v2=3 v3=4 v1=512 " + " ".join(["v0=1"] * 15), 8),  # not a code token
        ("point v0=1 v1=2 polygon v0=1 v1=2 v2=3 v3=4 v2=1 " + " ".join(["v0=1"] * 15), 8),
        ("point v0=1 v1=2 polygon v0=50 v1=10 v2=40 v3=20 " + MASK, 4),  # xmax < xmin
        ("point v0=1 v1=2 none point v0=1 v1=2 polygon v0=1 v1=20 v2=40 v3=10 " + MASK, 8),  # ymax < ymin
        ("point v0=1000 v1=2 none", 1),
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(text: str, position: int) -> None:
    assert_parse_error(SamInstanceSerializer(), text, position)


def test_point_without_none_or_polygon_says_what_was_expected() -> None:
    err = assert_parse_error(SamInstanceSerializer(), "point v0=1 v1=2 point v0=3 v1=4 none", 3)
    assert "'none' or 'polygon'" in str(err) and "'point'" in str(err)


@pytest.mark.parametrize(
    "bad",
    [
        {"x": 1000, "y": 0},
        {"x": 0, "y": -1},
        {"x": 1, "y": 1, "instances": [{"bbox": (50, 6, 40, 60), "tokens": TOKENS}]},  # xmax < xmin
        {"x": 1, "y": 1, "instances": [{"bbox": (5, 60, 50, 6), "tokens": TOKENS}]},  # ymax < ymin
        {"x": 1, "y": 1, "instances": [{"bbox": (5, 6, 1000, 60), "tokens": TOKENS}]},
        {"x": 1, "y": 1, "instances": [{"bbox": (5, 6, 50, 60), "tokens": TOKENS[:15]}]},
        {"x": 1, "y": 1, "instances": [{"bbox": (5, 6, 50, 60), "tokens": (1024,) + TOKENS[1:]}]},
        {"x": 1, "y": 1, "instances": [{"bbox": (5, 6, 50), "tokens": TOKENS}]},
    ],
)
def test_invalid_points_are_refused_when_writing(bad: dict) -> None:
    assert_refused_when_writing(SamInstanceSerializer(), [QueryPoint(x=0, y=0), bad], "point 1")


def test_random_token_soup_raises_only_serialization_errors() -> None:
    alphabet = ["point", "polygon", "none", "v0=1", "v1=2", "v2=3", "v3=4", "v1=600", "v0=1000", "human", "[S_1]"]
    instance = f"point v0=1 v1=2 polygon v0=1 v1=2 v2=3 v3=4 {MASK}"
    assert_token_soup_is_safe(SamInstanceSerializer(), alphabet, trials=300, max_tokens=30, valid_prefix=instance)


# ------------------------------------------------------------------------------------------- official tokenizer


def test_format_keywords_are_single_official_tokens(ml4m_vocabulary: TextVocabulary) -> None:
    for word, token_id in KEYWORD_IDS.items():
        assert ml4m_vocabulary.encode(word) == [token_id], word


def test_serialized_points_encode_to_the_official_ids(ml4m_vocabulary: TextVocabulary) -> None:
    text = SamInstanceSerializer().serialize([QueryPoint(x=30, y=10, instances=(INSTANCE,)), QueryPoint(x=1, y=2)])
    ids = ml4m_vocabulary.encode(text)
    assert ids[:12] == [6712, 214, 1234, 14445, 209, 1210, 2254, 3264, 204, 205, 715, 1204]
    assert ids[-4:] == [6712, 206, 1205, 18109]
    ser = SamInstanceSerializer()
    for seed in range(20):
        text = ser.serialize(ser.example(random.Random(seed)), random.Random(seed))
        ids = ml4m_vocabulary.encode(text)
        assert ml4m_vocabulary.unk_id not in ids
        assert ids == [official_id(t) for t in text.split()]
