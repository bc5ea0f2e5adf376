"""The metadata_image member of the metadata group (ml-4m ``MetadataTransform``): chunks ``v1=<type id> v0=<bin>``.

Image sizes are ``value // 32``; colourfulness, brightness, contrast, saturation and entropy use 50 min/max bins
``int((clip(v) - lo) / (hi - lo) * 49)``; watermark and aesthetic scores use manual edges ([0.5] and [4.5, 5.5]).
Parsing returns bin centres, so re-serialising a parsed string reproduces it exactly.
"""

from __future__ import annotations

import random

import pytest

from fourm_core.plugin import GroupSerializer, KeyValueSerializer, SerializationError, TextVocabulary
from fourm_core.testing.serializers import (
    assert_parse_error,
    assert_token_soup_is_safe,
    value_id,
)
from fourm_metadata_image.plugin import FIELDS, METADATA_IMAGE, build_serializer

#: The official type ids (ml-4m ``metadata_id_map``) and binning of this member's fields.
OFFICIAL = {
    "original_width": (0, "div", 32),
    "original_height": (1, "div", 32),
    "colorfulness": (9, "bins", (0, 150, 50)),
    "brightness": (10, "bins", (0, 255, 50)),
    "contrast": (11, "bins", (0, 127, 50)),
    "saturation": (12, "bins", (0, 255, 50)),
    "entropy": (13, "bins", (0, 10, 50)),
    "watermark_score": (19, "edges", (0.5,)),
    "aesthetic_score": (20, "edges", (4.5, 5.5)),
}


@pytest.fixture(scope="module")
def ser() -> KeyValueSerializer:
    return build_serializer()


# ---------------------------------------------------------------------------------------------------------- writing


def test_the_field_table_is_the_official_one() -> None:
    assert [f.name for f in FIELDS] == list(OFFICIAL)
    for field in FIELDS:
        type_id, kind, params = OFFICIAL[field.name]
        assert field.type_id == type_id and field.tag == f"v1={type_id}"
        if kind == "div":
            assert (field.divisor, field.edges, field.bins) == (params, None, None)
        elif kind == "bins":
            assert (field.lo, field.hi, field.bins, field.divisor, field.edges) == (*params, None, None)
        else:
            assert (field.edges, field.divisor, field.bins) == (params, None, None)
    assert METADATA_IMAGE.spec.chunk_tags == tuple(f"v1={OFFICIAL[n][0]}" for n in OFFICIAL)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"original_width": 640}, "v1=0 v0=20"),  # 640 // 32
        ({"original_height": 479}, "v1=1 v0=14"),
        ({"original_width": 31}, "v1=0 v0=0"),
        ({"original_width": 40000}, "v1=0 v0=999"),  # 1250 clamped
        ({"brightness": 255}, "v1=10 v0=49"),
        ({"brightness": 128}, "v1=10 v0=24"),  # int(128 / 255 * 49) = int(24.6)
        ({"brightness": 0}, "v1=10 v0=0"),
        ({"colorfulness": 200}, "v1=9 v0=49"),  # clipped to 150
        ({"contrast": -5}, "v1=11 v0=0"),  # clipped to 0
        ({"saturation": 100}, "v1=12 v0=19"),  # int(19.2)
        ({"entropy": 5}, "v1=13 v0=24"),  # int(24.5)
        ({"watermark_score": 0.7}, "v1=19 v0=1"),
        ({"watermark_score": 0.5}, "v1=19 v0=1"),  # an edge belongs to the upper bin
        ({"watermark_score": 0.49}, "v1=19 v0=0"),
        ({"aesthetic_score": 5.0}, "v1=20 v0=1"),
        ({"aesthetic_score": 4.2}, "v1=20 v0=0"),
        ({"aesthetic_score": 5.5}, "v1=20 v0=2"),
        ({"aesthetic_score": 9}, "v1=20 v0=2"),
    ],
)
def test_hand_computed_chunks(ser: KeyValueSerializer, values: dict, expected: str) -> None:
    assert ser.serialize(values) == expected


def test_without_rng_chunks_follow_the_field_table_and_none_values_are_left_out(ser: KeyValueSerializer) -> None:
    record = {"aesthetic_score": 5.0, "brightness": 255, "original_width": 640, "entropy": None}
    assert ser.serialize(record) == "v1=0 v0=20 v1=10 v0=49 v1=20 v0=1"
    assert ser.chunks(record) == ["v1=0 v0=20", "v1=10 v0=49", "v1=20 v0=1"]
    assert ser.serialize({}) == ""


# ---------------------------------------------------------------------------------------------------- round trips


def test_parse_returns_bin_centres_that_reproduce_the_string(ser: KeyValueSerializer) -> None:
    text = "v1=0 v0=20 v1=10 v0=49 v1=19 v0=1 v1=20 v0=1 v1=13 v0=0"
    parsed = ser.parse(text)
    assert parsed == {
        "original_width": 656.0,
        "brightness": 255.0,
        "watermark_score": 0.75,
        "aesthetic_score": 5.0,
        "entropy": pytest.approx(0.5 / 49 * 10),
    }
    assert ser.serialize(parsed) == "v1=0 v0=20 v1=10 v0=49 v1=13 v0=0 v1=19 v0=1 v1=20 v0=1"  # table order
    assert ser.parse("v1=20 v0=0") == {"aesthetic_score": 4.0}  # edge bins: half a gap beyond the outer edges
    assert ser.parse("v1=20 v0=2") == {"aesthetic_score": 6.0}


def test_every_bin_of_every_field_round_trips_exactly(ser: KeyValueSerializer) -> None:
    for field in FIELDS:
        for b in range(field.max_bin + 1):
            chunk = f"{field.tag} v0={b}"
            assert ser.serialize(ser.parse(chunk)) == chunk


def test_parse_of_serialize_is_within_one_bin(ser: KeyValueSerializer) -> None:
    record = {"original_width": 1023, "brightness": 77.7, "contrast": 12.3, "entropy": 7.77, "colorfulness": 33.0}
    parsed = ser.parse(ser.serialize(record))
    assert abs(parsed["original_width"] - 1023) <= 16
    for name in ("brightness", "contrast", "entropy", "colorfulness"):
        lo, hi, bins = OFFICIAL[name][2]
        assert abs(parsed[name] - record[name]) <= (hi - lo) / (bins - 1), name


def test_shuffled_chunks_parse_to_the_same_record(ser: KeyValueSerializer) -> None:
    record = {f.name: f.sample(random.Random(i)) for i, f in enumerate(FIELDS)}
    canonical = ser.serialize(record)
    orders = set()
    for seed in range(10):
        shuffled = ser.serialize(record, random.Random(seed))
        orders.add(shuffled)
        assert sorted(ser.chunks(record, random.Random(seed))) == sorted(ser.chunks(record))
        assert ser.parse(shuffled) == ser.parse(canonical)
    assert len(orders) > 5


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("v1=5 v0=3", 0),  # a metadata_semantic tag: not this member's
        ("v1=17 v0=3", 0),  # a metadata_geometric tag
        ("v1=21 v0=3", 0),  # no such type id
        ("v0=3", 0),  # value without a tag
        ("v1=10", 1),  # tag without a value
        ("v1=10 v1=11 v0=2", 1),
        ("v1=10 v2=4", 1),
        ("v1=10 v0=4 v0=5", 2),
        ("v1=10 v0=4 brightness", 2),
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(ser: KeyValueSerializer, text: str, position: int) -> None:
    assert_parse_error(ser, text, position)


def test_impossible_bins_and_repeated_fields_are_errors_naming_the_field(ser: KeyValueSerializer) -> None:
    assert_parse_error(ser, "v1=19 v0=2", None, "watermark_score", "2")  # watermark has bins 0..1
    assert_parse_error(ser, "v1=10 v0=50", None, "brightness", "50")  # 50 bins: 0..49
    assert_parse_error(ser, "v1=10 v0=1 v1=0 v0=3 v1=10 v0=1", None, "brightness", "twice")


def test_unknown_fields_are_refused_when_writing(ser: KeyValueSerializer) -> None:
    with pytest.raises(SerializationError, match=r"^\[metadata_image\] unknown fields \['n_humans'\]"):
        ser.serialize({"brightness": 3, "n_humans": 2})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "bright", None.__class__])
def test_non_numeric_values_are_refused_with_a_serialization_error(ser: KeyValueSerializer, bad) -> None:
    with pytest.raises(SerializationError, match=r"^\[metadata_image\] brightness: expected a"):
        ser.serialize({"brightness": bad})


def test_non_canonical_value_tokens_are_not_read() -> None:
    from fourm_core.plugin import parse_value_token

    assert parse_value_token("v0=049") is None and parse_value_token("v0=0") == (0, 0)


def test_random_token_soup_raises_only_serialization_errors(ser: KeyValueSerializer) -> None:
    alphabet = ["v1=0", "v1=10", "v1=19", "v1=20", "v1=5", "v0=0", "v0=1", "v0=2", "v0=49", "v0=999", "v2=3", "x"]
    assert_token_soup_is_safe(ser, alphabet, trials=300, max_tokens=10)


def test_the_group_interleaves_members_and_routes_chunks_back() -> None:
    semantic = pytest.importorskip("fourm_metadata_semantic.plugin")
    geometric = pytest.importorskip("fourm_metadata_geometric.plugin")
    members = [(METADATA_IMAGE.spec.name, build_serializer(), METADATA_IMAGE.spec.chunk_tags)]
    members += [
        (d.spec.name, m.build_serializer(), d.spec.chunk_tags)
        for m, d in ((semantic, semantic.METADATA_SEMANTIC), (geometric, geometric.METADATA_GEOMETRIC))
    ]
    group = GroupSerializer("metadata", members)
    value = {
        "metadata_image": {"original_width": 640, "brightness": 255},
        "metadata_semantic": {"n_humans": 1500},
        "metadata_geometric": {"occlusion_score": 0.25},
    }
    assert group.serialize(value) == "v1=0 v0=20 v1=10 v0=49 v1=5 v0=999 v1=18 v0=49"
    shuffled = group.serialize(value, random.Random(2))
    assert sorted(group.chunks(value, random.Random(2))) == sorted(group.chunks(value))
    assert group.parse(shuffled) == group.parse(group.serialize(value))
    assert group.parse(shuffled)["metadata_image"] == {"original_width": 656.0, "brightness": 255.0}


# ------------------------------------------------------------------------------------------- official tokenizer


def test_chunks_encode_to_the_official_value_token_ids(
    ml4m_vocabulary: TextVocabulary, ser: KeyValueSerializer
) -> None:
    assert ml4m_vocabulary.encode(ser.serialize({"original_width": 640})) == [1204, 224]
    assert ml4m_vocabulary.encode(ser.serialize({"brightness": 255, "aesthetic_score": 5.0})) == [1214, 253, 1224, 205]
    record = {f.name: f.sample(random.Random(i)) for i, f in enumerate(FIELDS)}
    text = ser.serialize(record, random.Random(0))
    ids = ml4m_vocabulary.encode(text)
    assert ml4m_vocabulary.unk_id not in ids and ids == [value_id(t) for t in text.split()]
