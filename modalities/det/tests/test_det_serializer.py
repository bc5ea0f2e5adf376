"""The det string format (ml-4m ``DetectionTransform``): ``v0=xmin v1=ymin v2=xmax v3=ymax class`` per box.

Coordinates are ``round(x * 999)``, boxes nearest the origin (top-left corner) come first, scores below 0.6 are
dropped, and the string is read back with errors that name the modality and the token position.
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
from fourm_det.classes import COCO_CLASSES
from fourm_det.serializer import Box, DetSerializer

STEP = 1 / 999  # one quantisation bin


def box(xmin: float, ymin: float, xmax: float, ymax: float, label: str = "person", score: float = 1.0) -> dict:
    return dict(xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, label=label, score=score)


def labels(text: str) -> list[str]:
    return [b.label for b in DetSerializer().parse(text)]


# ---------------------------------------------------------------------------------------------------------- writing


def test_one_box_is_four_value_tokens_and_the_class_name() -> None:
    # round(0.1*999)=100, round(0.2*999)=200, round(0.5*999)=round(499.5)=500, round(0.9*999)=899
    text = DetSerializer().serialize([box(0.1, 0.2, 0.5, 0.9, "teddy bear")])
    assert text == "v0=100 v1=200 v2=500 v3=899 teddy bear"


def test_corners_of_the_image_map_to_the_first_and_last_bin() -> None:
    assert DetSerializer().serialize([Box(xmin=0, ymin=0, xmax=1, ymax=1, label="tv")]) == "v0=0 v1=0 v2=999 v3=999 tv"


def test_boxes_are_ordered_by_distance_of_the_top_left_corner_to_the_origin() -> None:
    far_down = box(0.0, 0.8, 0.1, 0.9, "dog")  # 0.64
    right = box(0.5, 0.1, 0.6, 0.2, "cat")  # 0.26
    centre = box(0.3, 0.3, 0.9, 0.9, "couch")  # 0.18 (smallest, though neither xmin nor ymin is)
    expected = "v0=300 v1=300 v2=899 v3=899 couch v0=500 v1=100 v2=599 v3=200 cat v0=0 v1=799 v2=100 v3=899 dog"
    ser = DetSerializer()
    assert ser.serialize([far_down, right, centre]) == expected
    assert ser.serialize([centre, far_down, right]) == expected
    assert ser.serialize([right, centre, far_down], random.Random(3)) == expected  # the default order ignores rng


def test_scores_below_the_threshold_are_dropped_and_the_threshold_itself_is_kept() -> None:
    boxes = [box(0.1, 0.1, 0.2, 0.2, "cup", score=0.59), box(0.3, 0.3, 0.4, 0.4, "bowl", score=0.6)]
    assert DetSerializer().serialize(boxes) == "v0=300 v1=300 v2=400 v3=400 bowl"
    assert DetSerializer(threshold=0.5).serialize(boxes).endswith("bowl")
    assert DetSerializer(threshold=0.5).serialize(boxes).startswith("v0=100 v1=100 v2=200 v3=200 cup")


def test_no_box_gives_an_empty_string_and_back() -> None:
    ser = DetSerializer()
    assert ser.serialize([]) == ""
    assert ser.serialize([box(0.1, 0.1, 0.2, 0.2, score=0.1)]) == ""
    assert ser.parse("") == []
    assert ser.parse("  \n ") == []


def test_class_names_of_several_words_are_written_with_single_spaces_and_read_back() -> None:
    ser = DetSerializer()
    text = ser.serialize([box(0.0, 0.0, 0.5, 0.5, "traffic   light"), box(0.5, 0.5, 1.0, 1.0, "hot dog")])
    assert text == "v0=0 v1=0 v2=500 v3=500 traffic light v0=500 v1=500 v2=999 v3=999 hot dog"
    assert [b.label for b in ser.parse(text)] == ["traffic light", "hot dog"]


def test_other_orders_and_top_k_by_score() -> None:
    small = box(0.0, 0.0, 0.1, 0.1, "cup", score=0.7)
    large = box(0.5, 0.5, 1.0, 1.0, "bed", score=0.9)
    medium = box(0.2, 0.2, 0.5, 0.5, "cat", score=0.8)
    assert labels(DetSerializer(order="area").serialize([small, large, medium])) == ["bed", "cat", "cup"]
    assert labels(DetSerializer(order="score").serialize([small, large, medium])) == ["bed", "cat", "cup"]
    # top-k keeps the highest scores, then orders them by distance to the origin (official order_and_filter_bboxes)
    assert labels(DetSerializer(max_instances=2).serialize([small, large, medium])) == ["cat", "bed"]
    shuffled = DetSerializer(order="random")
    assert shuffled.serialize([small, large, medium], random.Random(5)) == shuffled.serialize(
        [small, large, medium], random.Random(5)
    )
    assert sorted(labels(shuffled.serialize([small, large, medium], random.Random(5)))) == ["bed", "cat", "cup"]


# ---------------------------------------------------------------------------------------------------- round trips


def test_parse_inverts_serialize_within_one_quantisation_step() -> None:
    ser = DetSerializer()
    for seed in range(30):
        boxes = [b for b in ser.example(random.Random(seed)) if b.score >= ser.threshold]
        text = ser.serialize(boxes)
        parsed = ser.parse(text)
        originals = sorted(boxes, key=lambda b: round(b.xmin * 999) ** 2 + round(b.ymin * 999) ** 2)
        assert [b.label for b in parsed] == [b.label for b in originals], seed
        for got, want in zip(parsed, originals):
            for name in ("xmin", "ymin", "xmax", "ymax"):
                assert getattr(got, name) == pytest.approx(getattr(want, name), abs=STEP / 2 + 1e-12), seed
        assert ser.serialize(parsed) == text, seed


def test_parsed_boxes_are_bin_values_over_999() -> None:
    (parsed,) = DetSerializer().parse("v0=100 v1=200 v2=500 v3=899 teddy bear")
    assert (parsed.xmin, parsed.ymin, parsed.xmax, parsed.ymax) == (100 / 999, 200 / 999, 500 / 999, 899 / 999)
    assert parsed.label == "teddy bear" and parsed.score == 1.0


# --------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("v0=1 v1=2 v2=3 v3=4", 4),  # no class name
        ("v0=1 v1=2 v2=3 v3=4 person v0=5 v1=6 v2=7 v3=8", 9),  # second box without a class name
        ("v0=1 v1=2 v2=3 person", 3),  # v3 missing
        ("v1=2 v0=1 v2=3 v3=4 person", 0),  # slots out of order
        ("person v0=1 v1=2 v2=3 v3=4", 0),  # class name first
        ("v0=1 v1=2 v2=3 v3=4 person v1=5", 5),  # stray value token after a box
        ("v0=1000 v1=2 v2=3 v3=4 person", 0),  # not a value token
        ("v0=500 v1=1 v2=400 v3=5 person", 0),  # xmax < xmin
        ("v0=1 v1=2 v2=3 v3=4 person v0=9 v1=9 v2=20 v3=1 cat", 5),  # ymax < ymin in the second box
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(text: str, position: int) -> None:
    assert_parse_error(DetSerializer(), text, position)


def test_missing_class_name_says_what_was_expected() -> None:
    err = assert_parse_error(DetSerializer(), "v0=1 v1=2 v2=3 v3=4", 4)
    assert "class name" in str(err) and "end of sequence" in str(err)


@pytest.mark.parametrize(
    "bad",
    [
        box(0.5, 0.1, 0.4, 0.2),  # xmax < xmin
        box(0.1, 0.5, 0.2, 0.4),  # ymax < ymin
        box(0.1, 0.1, 1.2, 0.2),  # outside the image
        box(-0.1, 0.1, 0.2, 0.2),
        box(0.1, 0.1, 0.2, 0.2, score=1.5),
        box(float("nan"), 0.1, 0.2, 0.2),
        {"xmin": 0.1, "ymin": 0.1, "xmax": 0.2, "ymax": 0.2},  # no label
        box(0.1, 0.1, 0.2, 0.2, label=""),
        box(0.1, 0.1, 0.2, 0.2, label="   "),
        box(0.1, 0.1, 0.2, 0.2, label="v0=3"),  # would end the class name when read back
        box(0.1, 0.1, 0.2, 0.2, label="big v3=999 dog"),
    ],
)
def test_invalid_boxes_are_refused_when_writing(bad: dict) -> None:
    assert_refused_when_writing(DetSerializer(), [box(0.0, 0.0, 0.1, 0.1), bad])


def test_random_token_soup_raises_only_serialization_errors() -> None:
    alphabet = [
        "v0=1",
        "v1=2",
        "v2=300",
        "v3=999",
        "v0=999",
        "v1=0",
        "v3=5",
        "v0=1000",
        "v7=3",
        "person",
        "teddy",
        "bear",
        "none",
        "[S_1]",
        "=",
        "v0=",
        "human",
        "polygon",
    ]
    assert_token_soup_is_safe(DetSerializer(), alphabet, trials=400, max_tokens=16, sorts=True)


# ------------------------------------------------------------------------------------------- official tokenizer


def test_serialized_boxes_encode_to_the_official_ids(ml4m_vocabulary: TextVocabulary) -> None:
    text = DetSerializer().serialize([box(0.1, 0.2, 0.5, 0.9, "teddy bear"), box(0.6, 0.6, 0.7, 0.8, "person")])
    assert text.split()[:4] == ["v0=100", "v1=200", "v2=500", "v3=899"]
    assert ml4m_vocabulary.encode(text) == [304, 1404, 2704, 4103, 4270, 803, 1803, 2903, 4003, 4253]
    assert [value_id(t) for t in text.split() if t.startswith("v")] == [304, 1404, 2704, 4103, 803, 1803, 2903, 4003]


def test_every_coco_class_is_one_official_token_in_alphabetical_order(ml4m_vocabulary: TextVocabulary) -> None:
    ids = {name: ml4m_vocabulary.encode(name) for name in COCO_CLASSES}
    assert all(len(v) == 1 for v in ids.values()), {k: ml4m_vocabulary.tokens(k) for k, v in ids.items() if len(v) != 1}
    assert [ids[name][0] for name in sorted(COCO_CLASSES)] == list(range(4204, 4284))
    assert (ids["person"], ids["teddy bear"], ids["airplane"], ids["zebra"]) == ([4253], [4270], [4204], [4283])


def test_examples_encode_without_unknown_tokens(ml4m_vocabulary: TextVocabulary) -> None:
    ser = DetSerializer()
    for seed in range(30):
        text = ser.serialize(ser.example(random.Random(seed)))
        ids = ml4m_vocabulary.encode(text)
        assert ml4m_vocabulary.unk_id not in ids, text
        value_tokens = [t for t in text.split() if re.fullmatch(r"v[0-3]=\d+", t)]
        assert [i for i in ids if 204 <= i < 4204] == [value_id(t) for t in value_tokens]
        assert len([i for i in ids if 4204 <= i < 4284]) == len(value_tokens) // 4  # one class token per box


def test_crop_clips_renormalises_mirrors_and_drops() -> None:
    from fourm_det.serializer import DetSerializer

    codec = DetSerializer()
    boxes = [
        {"xmin": 0.0, "ymin": 0.0, "xmax": 0.5, "ymax": 0.5, "label": "cat"},  # top-left quarter
        {"xmin": 0.75, "ymin": 0.75, "xmax": 1.0, "ymax": 1.0, "label": "dog"},  # outside the crop below
    ]
    (cat,) = codec.crop(boxes, [0, 0, 32, 32, 0], 64)  # the top-left quarter of a 64 px image
    assert (cat.xmin, cat.ymin, cat.xmax, cat.ymax, cat.label) == (0.0, 0.0, 1.0, 1.0, "cat")
    half = codec.crop(boxes, [16, 16, 32, 32, 1], 64)  # centre crop, mirrored
    assert [b.label for b in half] == ["cat"]
    assert (half[0].xmin, half[0].xmax, half[0].ymin, half[0].ymax) == (0.5, 1.0, 0.0, 0.5)
    full = codec.crop(boxes, [0, 0, 64, 64, 0], 64)
    assert codec.serialize(full) == codec.serialize(boxes)
