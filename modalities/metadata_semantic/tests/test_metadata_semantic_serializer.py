"""The metadata_semantic member of the metadata group (ml-4m ``MetadataTransform``): chunks ``v1=<type id> v0=<bin>``.

Counts (caption length, humans, SAM and COCO instances, diversities) are written raw, clamped to 0..999;
walkability and objectness use 50 bins over [0, 1]. Parsing returns bin centres.
"""

from __future__ import annotations

import random

import pytest

from fourm_core.plugin import KeyValueSerializer, SerializationError, TextVocabulary
from fourm_core.testing.serializers import assert_parse_error, value_id
from fourm_metadata_semantic.plugin import FIELDS, METADATA_SEMANTIC, build_serializer

#: The official type ids (ml-4m ``metadata_id_map``) and binning of this member's fields (None: raw integer).
OFFICIAL = {
    "caption_n_chars": (2, None),
    "caption_n_words": (3, None),
    "caption_n_sentences": (4, None),
    "n_humans": (5, None),
    "n_sam_instances": (6, None),
    "n_coco_instances": (7, None),
    "coco_instance_diversity": (8, None),
    "walkability": (14, (0, 1, 50)),
    "objectness": (15, (0, 1, 50)),
    "semantic_diversity": (16, None),
}


@pytest.fixture(scope="module")
def ser() -> KeyValueSerializer:
    return build_serializer()


def test_the_field_table_is_the_official_one() -> None:
    assert [f.name for f in FIELDS] == list(OFFICIAL)
    for field in FIELDS:
        type_id, bins = OFFICIAL[field.name]
        assert field.type_id == type_id and field.tag == f"v1={type_id}"
        assert (field.divisor, field.edges) == (None, None)
        assert (field.lo, field.hi, field.bins) == (bins or (None, None, None))
    assert METADATA_SEMANTIC.spec.chunk_tags == tuple(f"v1={OFFICIAL[n][0]}" for n in OFFICIAL)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"n_humans": 3}, "v1=5 v0=3"),
        ({"n_humans": 1500}, "v1=5 v0=999"),  # clamped to the largest value token
        ({"n_humans": -2}, "v1=5 v0=0"),
        ({"n_humans": 3.7}, "v1=5 v0=3"),
        ({"caption_n_chars": 57}, "v1=2 v0=57"),
        ({"caption_n_words": 11}, "v1=3 v0=11"),
        ({"caption_n_sentences": 2}, "v1=4 v0=2"),
        ({"n_sam_instances": 999}, "v1=6 v0=999"),
        ({"n_coco_instances": 0}, "v1=7 v0=0"),
        ({"coco_instance_diversity": 4}, "v1=8 v0=4"),
        ({"semantic_diversity": 12}, "v1=16 v0=12"),
        ({"walkability": 0.5}, "v1=14 v0=24"),  # int(0.5 * 49)
        ({"walkability": 0.0}, "v1=14 v0=0"),
        ({"objectness": 1.0}, "v1=15 v0=49"),
        ({"objectness": 1.2}, "v1=15 v0=49"),  # clipped to 1
        ({"objectness": 0.99}, "v1=15 v0=48"),
    ],
)
def test_hand_computed_chunks(ser: KeyValueSerializer, values: dict, expected: str) -> None:
    assert ser.serialize(values) == expected


def test_a_full_record_follows_the_field_table_without_rng(ser: KeyValueSerializer) -> None:
    record = {"semantic_diversity": 12, "n_humans": 1500, "walkability": 0.5, "caption_n_chars": 57}
    assert ser.serialize(record) == "v1=2 v0=57 v1=5 v0=999 v1=14 v0=24 v1=16 v0=12"


def test_parse_returns_bin_centres_that_reproduce_the_string(ser: KeyValueSerializer) -> None:
    text = "v1=5 v0=999 v1=14 v0=24 v1=15 v0=49 v1=2 v0=57"
    parsed = ser.parse(text)
    assert parsed == {
        "n_humans": 999.0,
        "walkability": pytest.approx(24.5 / 49),
        "objectness": 1.0,
        "caption_n_chars": 57.0,
    }
    assert ser.serialize(parsed) == "v1=2 v0=57 v1=5 v0=999 v1=14 v0=24 v1=15 v0=49"


def test_every_bin_of_every_field_round_trips_exactly(ser: KeyValueSerializer) -> None:
    for field in FIELDS:
        for b in range(field.max_bin + 1):
            chunk = f"{field.tag} v0={b}"
            assert ser.serialize(ser.parse(chunk)) == chunk


def test_counts_round_trip_exactly_and_shares_within_one_bin(ser: KeyValueSerializer) -> None:
    record = {"n_humans": 7, "n_sam_instances": 123, "walkability": 0.3141, "objectness": 0.777}
    parsed = ser.parse(ser.serialize(record))
    assert (parsed["n_humans"], parsed["n_sam_instances"]) == (7, 123)
    assert abs(parsed["walkability"] - 0.3141) <= 1 / 49 and abs(parsed["objectness"] - 0.777) <= 1 / 49


def test_shuffled_chunks_parse_to_the_same_record(ser: KeyValueSerializer) -> None:
    record = {f.name: f.sample(random.Random(i)) for i, f in enumerate(FIELDS)}
    canonical = ser.serialize(record)
    orders = {ser.serialize(record, random.Random(seed)) for seed in range(10)}
    assert len(orders) > 5
    for shuffled in orders:
        assert ser.parse(shuffled) == ser.parse(canonical)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("v1=0 v0=20", 0),  # a metadata_image tag: not this member's
        ("v1=18 v0=3", 0),  # a metadata_geometric tag
        ("v1=5", 1),
        ("v1=5 v0=3 v0=4", 2),
        ("v1=5 v1=6 v0=1", 1),
        ("v0=3 v1=5", 0),
        ("humans v1=5 v0=3", 0),
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(ser: KeyValueSerializer, text: str, position: int) -> None:
    assert_parse_error(ser, text, position)


def test_impossible_bins_repeats_and_unknown_fields_are_errors(ser: KeyValueSerializer) -> None:
    bad_bin = r"^\[metadata_semantic\] at token 1 'v0=50': expected a bin of walkability"
    with pytest.raises(SerializationError, match=bad_bin):
        ser.parse("v1=14 v0=50")
    with pytest.raises(SerializationError, match=r"^\[metadata_semantic\] at token 2 .*n_humans .* appears twice"):
        ser.parse("v1=5 v0=1 v1=5 v0=1")
    with pytest.raises(SerializationError, match=r"^\[metadata_semantic\] unknown fields \['brightness'\]"):
        ser.serialize({"brightness": 3})


def test_chunks_encode_to_the_official_value_token_ids(
    ml4m_vocabulary: TextVocabulary, ser: KeyValueSerializer
) -> None:
    assert ml4m_vocabulary.encode(ser.serialize({"n_humans": 1500})) == [1209, 1203]
    assert ml4m_vocabulary.encode(ser.serialize({"semantic_diversity": 12})) == [1220, 216]
    record = {f.name: f.sample(random.Random(i)) for i, f in enumerate(FIELDS)}
    text = ser.serialize(record, random.Random(0))
    ids = ml4m_vocabulary.encode(text)
    assert ml4m_vocabulary.unk_id not in ids and ids == [value_id(t) for t in text.split()]
