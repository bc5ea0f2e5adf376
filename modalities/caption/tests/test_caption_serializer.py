"""The caption codec: a caption is its own string (whitespace normalised), minus tokens that carry structure.

A caption must not contain anything the WordPiece tokenizer would read as a special token, a sentinel ``[S_k]`` or a
value token ``vK=N`` (they would corrupt span masking), including when punctuation is glued to it (``[S_1].``).
"""

from __future__ import annotations

import random
import re

import pytest

from fourm_caption.serializer import CaptionSerializer
from fourm_core.plugin import SerializationError, TextVocabulary

RESERVED_IDS = range(0, 4204)  # [PAD] [UNK] [SOS] [EOS], sentinels and value tokens

#: (caption, word position of the first reserved token) for captions the tokenizer would read structure from.
RESERVED = [
    ("a [S_1] b", 1),
    ("[S_0] a dog", 0),
    ("v0=3 cats", 0),
    ("three cats v3=999", 2),
    ("look at [S_1].", 2),  # punctuation glued on: still the sentinel
    ("x v0=3, y", 1),
    ("a dog (v1=20)", 2),
    ("a.v0=3 b", 0),
    ("foo[EOS]bar", 0),  # [PAD]..[EOS] are matched even inside a word
    ("a [PAD] b", 1),
    ("cats [UNK]", 1),
    ("the [SOS] of it", 1),
]
#: Captions that only look like reserved tokens: the official tokenizer splits them into ordinary WordPieces.
LOOKALIKES = [
    "v0=3x is a name",
    "v5=3",
    "av0=3 b",
    "x=3 and y=4",
    "[S_1]a",
    "b[S_1] c",
    "v0 = 3",
    "the [S] key",
    "a_v0=3",
]


# ---------------------------------------------------------------------------------------------------------- writing


def test_a_caption_is_itself_with_whitespace_collapsed() -> None:
    ser = CaptionSerializer()
    assert ser.serialize("a red cube on the grass.") == "a red cube on the grass."
    assert ser.serialize("  a  red\tcube \n on the grass. ") == "a red cube on the grass."
    assert ser.serialize("A Teddy Bear, two cups!", random.Random(0)) == "A Teddy Bear, two cups!"


def test_parse_normalises_whitespace_and_round_trips() -> None:
    ser = CaptionSerializer()
    assert ser.parse(" two  dogs\nin a park ") == "two dogs in a park"
    for seed in range(30):
        text = ser.serialize(ser.example(random.Random(seed)))
        assert ser.parse(text) == text
        assert ser.serialize(ser.parse(text)) == text


@pytest.mark.parametrize("value", ["", "   \n\t", None, 3, ["a", "b"]])
def test_empty_or_non_text_captions_are_refused(value: object) -> None:
    with pytest.raises(SerializationError) as info:
        CaptionSerializer().serialize(value)  # type: ignore[arg-type]
    assert info.type is SerializationError and str(info.value).startswith("[caption] ")


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("caption", "word"), RESERVED)
@pytest.mark.parametrize("method", ["serialize", "parse"])
def test_reserved_tokens_are_refused_with_their_position(method: str, caption: str, word: int) -> None:
    with pytest.raises(SerializationError) as info:
        getattr(CaptionSerializer(), method)(caption)
    assert info.type is SerializationError and info.value.modality == "caption"
    message = str(info.value)
    assert message.startswith("[caption] ") and re.search(rf"\bword {word}\b", message), message


def test_the_error_names_the_reserved_token_and_its_character_offset() -> None:
    with pytest.raises(SerializationError, match=r"character 8\).*'\[S_1\]'"):
        CaptionSerializer().serialize("look at [S_1]. and v0=3")


@pytest.mark.parametrize("caption", LOOKALIKES)
def test_lookalikes_of_reserved_tokens_are_ordinary_text(caption: str) -> None:
    assert CaptionSerializer().serialize(caption) == caption


# ------------------------------------------------------------------------------------------- official tokenizer


@pytest.mark.parametrize(("caption", "word"), RESERVED)
def test_every_refused_caption_really_encodes_to_a_reserved_id(
    ml4m_vocabulary: TextVocabulary, caption: str, word: int
) -> None:
    assert any(i in RESERVED_IDS for i in ml4m_vocabulary.encode(caption)), ml4m_vocabulary.tokens(caption)


def test_accepted_captions_never_encode_to_reserved_ids(ml4m_vocabulary: TextVocabulary) -> None:
    ser = CaptionSerializer()
    captions = LOOKALIKES + [ser.example(random.Random(seed)) for seed in range(40)]
    for caption in captions:
        ids = ml4m_vocabulary.encode(ser.serialize(caption))
        assert ids and not any(i in RESERVED_IDS for i in ids), (caption, ml4m_vocabulary.tokens(caption))


def test_coco_class_names_in_captions_are_whole_tokens(ml4m_vocabulary: TextVocabulary) -> None:
    text = CaptionSerializer().serialize("A person holds a Teddy Bear near a potted plant.")
    assert ml4m_vocabulary.tokens(text)[1] == "person" and ml4m_vocabulary.encode(text)[1] == 4253
    assert 4270 in ml4m_vocabulary.encode(text)  # "teddy bear" (class tokens are normalised: case does not matter)
