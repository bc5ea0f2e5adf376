"""The color_palette string format (ml-4m ``ColorPaletteTransform``): ``v1=n`` then three ``v0=`` channels per colour.

One palette of n = 1..7 sRGB colours is written per sample; the count token must match the colours that follow.
"""

from __future__ import annotations

import random

import pytest

from fourm_color_palette.serializer import PaletteSerializer
from fourm_core.plugin import SerializationError, TextVocabulary
from fourm_core.testing.serializers import (
    assert_parse_error,
    assert_refused_when_writing,
    assert_token_soup_is_safe,
    value_id,
)

# ---------------------------------------------------------------------------------------------------------- writing


def test_two_colours_are_a_count_and_six_channels() -> None:
    assert PaletteSerializer().serialize([(200, 30, 30), (10, 120, 40)]) == "v1=2 v0=200 v0=30 v0=30 v0=10 v0=120 v0=40"


def test_the_module_docstring_example() -> None:
    palette = [(200, 30, 30), (10, 120, 40), (250, 250, 250)]
    text = "v1=3 v0=200 v0=30 v0=30 v0=10 v0=120 v0=40 v0=250 v0=250 v0=250"
    assert PaletteSerializer().serialize(palette) == text
    assert PaletteSerializer().parse(text) == palette


def test_channel_extremes_and_rounding_of_float_channels() -> None:
    ser = PaletteSerializer()
    assert ser.serialize([(0, 255, 0)]) == "v1=1 v0=0 v0=255 v0=0"
    assert ser.serialize([(12.4, 254.6, 0.0)]) == "v1=1 v0=12 v0=255 v0=0"  # official round(value)


def test_seven_colours_are_22_tokens_and_the_order_is_kept() -> None:
    palette = [(i, 10 * i, 255 - i) for i in range(7)]
    text = PaletteSerializer().serialize(palette)
    assert len(text.split()) == 22
    assert text.split()[:7] == ["v1=7", "v0=0", "v0=0", "v0=255", "v0=1", "v0=10", "v0=254"]
    assert PaletteSerializer().serialize(palette, random.Random(1)) == text  # palettes are never shuffled


def test_choose_draws_one_stored_size_reproducibly() -> None:
    stored = {str(n): [(n, n, n)] * n for n in range(1, 8)}
    ser = PaletteSerializer()
    sizes = {len(ser.choose(stored, random.Random(seed))) for seed in range(60)}
    assert sizes == set(range(1, 8))
    assert ser.choose(stored, random.Random(4)) == ser.choose(stored, random.Random(4))
    assert ser.choose({3: [(1, 2, 3)] * 3}, random.Random(0)) == [(1, 2, 3)] * 3  # int keys too
    with pytest.raises(SerializationError):
        ser.choose({}, random.Random(0))


# ---------------------------------------------------------------------------------------------------- round trips


def test_parse_and_serialize_are_exact_inverses() -> None:
    ser = PaletteSerializer()
    for seed in range(40):
        palette = ser.example(random.Random(seed))
        text = ser.serialize(palette)
        assert ser.parse(text) == palette
        assert ser.serialize(ser.parse(text)) == text
        assert ser.parse(ser.serialize(palette, random.Random(seed))) == palette


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),  # nothing at all
        ("v0=1 v0=2 v0=3", 0),  # no count token
        ("v1=2 v0=1 v0=2 v0=3", 4),  # count says 2 colours, only 1 follows
        ("v1=1 v0=1 v0=2 v0=3 v0=4", 4),  # one channel too many
        ("v1=1 v0=1 v0=2 v0=3 v1=1 v0=1 v0=2 v0=3", 4),  # two palettes
        ("v1=1 v0=1 v1=2 v0=3", 2),  # wrong slot inside
        ("v1=1 v0=1 v0=2 red", 3),
        ("v1=0", 0),  # size outside 1..7
        ("v1=8 " + " ".join(["v0=1"] * 24), 0),
        ("v1=1 v0=300 v0=0 v0=0", 1),  # colour 300
        ("v1=2 v0=0 v0=0 v0=0 v0=0 v0=0 v0=256", 6),
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(text: str, position: int) -> None:
    assert_parse_error(PaletteSerializer(), text, position)


def test_count_mismatch_says_what_was_expected() -> None:
    err = assert_parse_error(PaletteSerializer(), "v1=2 v0=1 v0=2 v0=3", 4)
    assert "end of sequence" in str(err) and "v0=N" in str(err)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [(1, 2, 3)] * 8,
        [(300, 0, 0)],
        [(-1, 0, 0)],
        [(1, 2)],
        [(1, 2, 3, 4)],
        [(1, 2, "x")],
        [(1, 2, float("nan"))],
        [5],
    ],
)
def test_invalid_palettes_are_refused_when_writing(bad: list) -> None:
    assert_refused_when_writing(PaletteSerializer(), bad)


def test_random_token_soup_raises_only_serialization_errors() -> None:
    alphabet = ["v1=1", "v1=2", "v1=0", "v1=9", "v0=0", "v0=255", "v0=256", "v0=999", "v2=3", "v0=1000", "red", "[S_1]"]
    assert_token_soup_is_safe(PaletteSerializer(), alphabet, trials=400, max_tokens=8, valid_prefix="v1=1 v0=3 v0=4")


# ------------------------------------------------------------------------------------------- official tokenizer


def test_serialized_palettes_encode_to_the_official_ids(ml4m_vocabulary: TextVocabulary) -> None:
    text = PaletteSerializer().serialize([(200, 30, 30), (10, 120, 40)])
    assert ml4m_vocabulary.encode(text) == [1206, 404, 234, 234, 214, 324, 244]
    for seed in range(20):
        text = PaletteSerializer().serialize(PaletteSerializer().example(random.Random(seed)))
        assert ml4m_vocabulary.encode(text) == [value_id(t) for t in text.split()]
