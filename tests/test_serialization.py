"""Core serialization helpers and the metadata group assembled from three plugins."""

from __future__ import annotations

import random

import pytest

from fourm_core.registry import Registry
from fourm_core.serialization import (
    KeyValueField,
    SerializationError,
    TokenCursor,
    code_token,
    coord_bin,
    parse_code_token,
    parse_value_token,
    value_token,
)


def test_value_tokens_check_their_range() -> None:
    assert value_token(3, 999) == "v3=999" and parse_value_token("v2=17") == (2, 17)
    assert parse_value_token("v4=1") is None and parse_value_token("v0=1000") is None
    with pytest.raises(ValueError, match="0..999"):
        value_token(0, 1000)


def test_coordinates_use_999_steps() -> None:
    assert [coord_bin(x) for x in (0, 0.5, 1, 1.2, -0.1)] == [0, 500, 999, 999, 0]


def test_codes_above_511_move_to_the_v1_slot() -> None:
    assert [code_token(c) for c in (0, 511, 512, 1023)] == ["v0=0", "v0=511", "v1=0", "v1=511"]
    assert [parse_code_token(t) for t in ("v0=511", "v1=0", "v1=511", "v2=3", "v1=600")] == [511, 512, 1023, None, None]
    with pytest.raises(ValueError):
        code_token(1024)


@pytest.mark.parametrize(
    ("field", "value", "bin_"),
    [
        (KeyValueField("w", 0, divisor=32), 640, 20),
        (KeyValueField("b", 10, lo=0, hi=255, bins=50), 255, 49),
        (KeyValueField("b", 10, lo=0, hi=255, bins=50), 127.5, 24),
        (KeyValueField("b", 10, lo=0, hi=255, bins=50), -3, 0),
        (KeyValueField("wm", 19, edges=(0.5,)), 0.7, 1),
        (KeyValueField("aes", 20, edges=(4.5, 5.5)), 5.5, 2),
        (KeyValueField("n", 5), 1500, 999),
    ],
)
def test_field_encodings_match_ml4m_and_bin_centres_round_trip(field: KeyValueField, value: float, bin_: int) -> None:
    assert field.encode(value) == bin_
    for b in range(field.max_bin + 1):
        assert field.encode(field.decode(b)) == b


def test_cursor_errors_name_the_position_and_expectation() -> None:
    cursor = TokenCursor("thing", "point v0=3 banana")
    cursor.word("point")
    cursor.value(0)
    with pytest.raises(SerializationError, match=r"\[thing\] at token 2 'banana': expected a v1=N value token"):
        cursor.value(1)
    with pytest.raises(SerializationError, match=r"end of sequence"):
        TokenCursor("thing", "").word()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={"albedo"}, strict=False)


def test_the_metadata_group_interleaves_three_plugins(registry: Registry) -> None:
    group = registry.key_serializer("metadata")
    value = {
        "metadata_image": {"brightness": 200.0, "original_width": 640},
        "metadata_semantic": {"n_humans": 2, "walkability": 0.5},
        "metadata_geometric": {"occlusion_score": 0.1},
    }
    text = group.serialize(value)
    assert text == "v1=0 v0=20 v1=10 v0=38 v1=5 v0=2 v1=14 v0=24 v1=18 v0=19"
    shuffled = group.serialize(value, random.Random(3))
    assert sorted(group.split(shuffled)["metadata_semantic"]) == ["v1=14 v0=24", "v1=5 v0=2"]
    parsed = group.parse(shuffled)
    assert group.serialize(parsed) == text
    chunks = registry.masking_chunks("metadata_image", shuffled)
    assert " ".join(chunks) == shuffled and sorted(chunks) == sorted(group.chunks(parsed))


def test_group_parse_rejects_a_chunk_no_member_owns(registry: Registry) -> None:
    with pytest.raises(SerializationError, match="expected a chunk tag"):
        registry.key_serializer("metadata").parse("v0=3 v1=0 v0=20")


def test_a_single_plugin_key_returns_its_own_serializer(registry: Registry) -> None:
    assert registry.key_serializer("det") is registry.serializer("det")
    with pytest.raises(KeyError, match="no modality has the model key"):
        registry.key_serializer("tok_sonar@224")
