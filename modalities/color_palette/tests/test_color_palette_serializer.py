"""The color_palette string format (ml-4m ``ColorPaletteTransform``): ``v1=n`` then three ``v0=`` channels per colour.

One palette of n = 1..7 sRGB colours is written per sample; the count token must match the colours that follow.
"""

from __future__ import annotations

import random
import re

import pytest

from fourm_color_palette.serializer import PaletteSerializer
from fourm_core.serialization import SerializationError
from fourm_core.vocab import TextVocabulary


def value_id(token: str) -> int:
    slot, value = re.fullmatch(r"v([0-3])=(\d+)", token).groups()  # type: ignore[union-attr]
    return 204 + 1000 * int(slot) + int(value)


def assert_parse_error(text: str, position: int) -> SerializationError:
    with pytest.raises(SerializationError) as info:
        PaletteSerializer().parse(text)
    assert info.type is SerializationError
    assert info.value.modality == "color_palette"
    assert str(info.value).startswith("[color_palette] ")
    assert re.search(rf"\btoken {position}\b", str(info.value)), str(info.value)
    return info.value


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
    assert_parse_error(text, position)


def test_count_mismatch_says_what_was_expected() -> None:
    err = assert_parse_error("v1=2 v0=1 v0=2 v0=3", 4)
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
    with pytest.raises(SerializationError) as info:
        PaletteSerializer().serialize(bad)
    assert info.type is SerializationError and str(info.value).startswith("[color_palette] ")


def test_random_token_soup_raises_only_serialization_errors() -> None:
    alphabet = ["v1=1", "v1=2", "v1=0", "v1=9", "v0=0", "v0=255", "v0=256", "v0=999", "v2=3", "v0=1000", "red", "[S_1]"]
    rng = random.Random(0)
    ser = PaletteSerializer()
    for _ in range(400):
        tokens = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        if rng.random() < 0.5:  # well-formed prefix, to reach the later checks
            tokens = ["v1=1", "v0=3", "v0=4"] + tokens
        try:
            parsed = ser.parse(" ".join(tokens))
        except SerializationError as exc:
            assert exc.modality == "color_palette"
            continue
        assert ser.parse(ser.serialize(parsed)) == parsed


# ------------------------------------------------------------------------------------------- official tokenizer


def test_serialized_palettes_encode_to_the_official_ids(ml4m_vocabulary: TextVocabulary) -> None:
    text = PaletteSerializer().serialize([(200, 30, 30), (10, 120, 40)])
    assert ml4m_vocabulary.encode(text) == [1206, 404, 234, 234, 214, 324, 244]
    for seed in range(20):
        text = PaletteSerializer().serialize(PaletteSerializer().example(random.Random(seed)))
        assert ml4m_vocabulary.encode(text) == [value_id(t) for t in text.split()]
