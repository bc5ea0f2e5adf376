"""The metadata_geometric member of the metadata group (ml-4m ``MetadataTransform``): chunks ``v1=<type id> v0=<bin>``.

Geometric complexity (type 17) uses 50 bins over [0, 0.75], the occlusion score (type 18) 50 bins over [0, 0.25]:
``int((clip(v) - lo) / (hi - lo) * 49)``. Parsing returns bin centres.
"""

from __future__ import annotations

import random

import pytest

from fourm_core.plugin import KeyValueSerializer, SerializationError, TextVocabulary
from fourm_core.testing.serializers import assert_parse_error
from fourm_metadata_geometric.plugin import FIELDS, METADATA_GEOMETRIC, build_serializer


@pytest.fixture(scope="module")
def ser() -> KeyValueSerializer:
    return build_serializer()


def test_the_field_table_is_the_official_one() -> None:
    table = {f.name: (f.type_id, f.lo, f.hi, f.bins, f.divisor, f.edges) for f in FIELDS}
    assert table == {
        "geometric_complexity": (17, 0, 0.75, 50, None, None),
        "occlusion_score": (18, 0, 0.25, 50, None, None),
    }
    assert METADATA_GEOMETRIC.spec.chunk_tags == ("v1=17", "v1=18")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"geometric_complexity": 0.375}, "v1=17 v0=24"),  # int(0.5 * 49)
        ({"geometric_complexity": 0.75}, "v1=17 v0=49"),
        ({"geometric_complexity": 1.0}, "v1=17 v0=49"),  # clipped to 0.75
        ({"geometric_complexity": 0.0}, "v1=17 v0=0"),
        ({"occlusion_score": 0.25}, "v1=18 v0=49"),
        ({"occlusion_score": 0.1}, "v1=18 v0=19"),  # int(0.4 * 49) = int(19.6)
        ({"occlusion_score": -0.1}, "v1=18 v0=0"),
        ({"occlusion_score": 0.1, "geometric_complexity": 0.375}, "v1=17 v0=24 v1=18 v0=19"),  # table order
    ],
)
def test_hand_computed_chunks(ser: KeyValueSerializer, values: dict, expected: str) -> None:
    assert ser.serialize(values) == expected


def test_parse_returns_bin_centres_that_reproduce_the_string(ser: KeyValueSerializer) -> None:
    parsed = ser.parse("v1=18 v0=19 v1=17 v0=49")
    assert parsed == {"occlusion_score": pytest.approx(19.5 / 49 * 0.25), "geometric_complexity": 0.75}
    assert ser.serialize(parsed) == "v1=17 v0=49 v1=18 v0=19"
    assert ser.parse("v1=17 v0=0") == {"geometric_complexity": pytest.approx(0.5 / 49 * 0.75)}


def test_every_bin_round_trips_and_values_stay_within_one_bin(ser: KeyValueSerializer) -> None:
    for field in FIELDS:
        for b in range(50):
            chunk = f"{field.tag} v0={b}"
            assert ser.serialize(ser.parse(chunk)) == chunk
    rng = random.Random(0)
    for _ in range(50):
        record = {"geometric_complexity": rng.uniform(0, 0.75), "occlusion_score": rng.uniform(0, 0.25)}
        parsed = ser.parse(ser.serialize(record))
        assert abs(parsed["geometric_complexity"] - record["geometric_complexity"]) <= 0.75 / 49
        assert abs(parsed["occlusion_score"] - record["occlusion_score"]) <= 0.25 / 49


def test_shuffled_chunks_parse_to_the_same_record(ser: KeyValueSerializer) -> None:
    record = {"geometric_complexity": 0.3, "occlusion_score": 0.2}
    orders = {ser.serialize(record, random.Random(seed)) for seed in range(10)}
    assert orders == {"v1=17 v0=19 v1=18 v0=39", "v1=18 v0=39 v1=17 v0=19"}
    for text in orders:
        assert ser.parse(text) == ser.parse(ser.serialize(record))


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("v1=10 v0=3", 0),  # a metadata_image tag
        ("v1=5 v0=3", 0),  # a metadata_semantic tag
        ("v1=17", 1),
        ("v1=17 v2=3", 1),
        ("v1=17 v0=3 v0=4", 2),
        ("v0=3", 0),
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(ser: KeyValueSerializer, text: str, position: int) -> None:
    assert_parse_error(ser, text, position)


def test_impossible_bins_repeats_and_unknown_fields_are_errors(ser: KeyValueSerializer) -> None:
    with pytest.raises(
        SerializationError,
        match=r"^\[metadata_geometric\] at token 1 'v0=50': expected a bin of occlusion_score in 0..49",
    ):
        ser.parse("v1=18 v0=50")
    twice = r"^\[metadata_geometric\] at token 2 .*geometric_complexity .* appears twice"
    with pytest.raises(SerializationError, match=twice):
        ser.parse("v1=17 v0=1 v1=17 v0=2")
    with pytest.raises(SerializationError, match=r"^\[metadata_geometric\] unknown fields"):
        ser.serialize({"depth": 3})


def test_chunks_encode_to_the_official_value_token_ids(
    ml4m_vocabulary: TextVocabulary, ser: KeyValueSerializer
) -> None:
    text = ser.serialize({"geometric_complexity": 0.375, "occlusion_score": 0.25})
    assert ml4m_vocabulary.encode(text) == [1221, 228, 1222, 253]  # v1=17 v0=24 v1=18 v0=49
