"""The human_poses string format (ml-4m ``HumanPoseTransform``).

Per person ``human v0..v3 <bbox>`` then the groups ``pose`` (8 codebook tokens), ``global`` (9 rotation entries),
``camera`` (3) and ``shape`` (10 betas), shuffled per person with an rng; nobody gives ``none``. Box ``round(999 x)``,
rotation ``round(499.5 x + 499.5)``, betas ``round(166.5 b + 499.5)`` clipped to [-3, 3], camera
``round(49.95 c + 49.95)`` clipped to [-1, 19], pose ids ``v0=id`` below 512 and ``v1=id-512`` above.
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
from fourm_human_poses.serializer import Human, HumanPoseSerializer

KEYWORD_IDS = {"human": 6304, "pose": 8620, "global": 9292, "camera": 5585, "shape": 6631, "none": 18109}

HUMAN = Human(
    bbox=(0.1, 0.2, 0.5, 0.9),
    global_orient=(1, 0, 0, 0, -1, 0.25, 0, -0.5, 1),
    pose_tokens=(0, 511, 512, 1023, 7, 600, 100, 900),
    betas=(0, 1, -1, 3, -3, 5, -5, 0.5, -0.5, 2),
    camera=(0, 1, 19),
)
HUMAN_GROUPS = {
    "pose": "pose v0=0 v0=511 v1=0 v1=511 v0=7 v1=88 v0=100 v1=388",
    # 499.5*x + 499.5: 1 -> 999, 0 -> round(499.5) = 500 (half to even, as ml-4m), 0.25 -> 624.375, -0.5 -> 249.75
    "global": "global v0=999 v0=500 v0=500 v0=500 v0=0 v0=624 v0=500 v0=250 v0=999",
    # 49.95*c + 49.95: 0 -> 49.95, 1 -> 99.9, 19 -> 999
    "camera": "camera v0=50 v0=100 v0=999",
    # 166.5*b + 499.5, b clipped to [-3, 3]: 5 -> 999, -5 -> 0, 0.5 -> 582.75, 2 -> round(832.5) = 832
    "shape": "shape v0=500 v0=666 v0=333 v0=999 v0=0 v0=999 v0=0 v0=583 v0=416 v0=832",
}
GROUP_ORDER = ("pose", "global", "camera", "shape")  # without an rng
HUMAN_TEXT = " ".join(["human v0=100 v1=200 v2=500 v3=899", *(HUMAN_GROUPS[g] for g in GROUP_ORDER)])


def official_id(token: str) -> int:
    return KEYWORD_IDS[token] if token in KEYWORD_IDS else value_id(token)


def group_order(text: str) -> list[str]:
    return [t for t in text.split() if t in GROUP_ORDER]


def human_dict(**changes) -> dict:
    return {**HUMAN.model_dump(), **changes}


# ---------------------------------------------------------------------------------------------------------- writing


def test_one_human_hand_computed() -> None:
    assert HumanPoseSerializer().serialize([HUMAN]) == HUMAN_TEXT
    assert len(HUMAN_TEXT.split()) == 39  # 1 + 4 + (1+8) + (1+9) + (1+3) + (1+10), as in the paper's budget


def test_nobody_is_none_and_back() -> None:
    ser = HumanPoseSerializer()
    assert ser.serialize([]) == "none"
    assert ser.serialize([], random.Random(0)) == "none"
    assert ser.parse("none") == []
    assert ser.parse("  none ") == []


def test_without_rng_groups_are_pose_global_camera_shape_and_people_are_space_joined() -> None:
    other = Human(
        bbox=(0.5, 0.5, 0.6, 0.7), global_orient=(0,) * 9, pose_tokens=(1,) * 8, betas=(0,) * 10, camera=(-1, 0, 0)
    )
    text = HumanPoseSerializer().serialize([HUMAN, other])
    assert text.startswith(HUMAN_TEXT + " human v0=500 v1=500 v2=599 v3=699 pose ")
    assert text.endswith("camera v0=0 v0=50 v0=50 shape " + " ".join(["v0=500"] * 10))
    assert group_order(text) == list(GROUP_ORDER) * 2
    assert "  " not in text and text == text.strip()


def test_rng_shuffles_the_groups_of_each_person_and_keeps_each_group_intact() -> None:
    ser = HumanPoseSerializer()
    orders = set()
    for seed in range(20):
        text = ser.serialize([HUMAN], random.Random(seed))
        assert text.startswith("human v0=100 v1=200 v2=500 v3=899 ")
        orders.add(tuple(group_order(text)))
        for group in HUMAN_GROUPS.values():
            assert group in text
        assert ser.serialize([HUMAN], random.Random(seed)) == text  # reproducible
    assert len(orders) > 3


def test_values_outside_their_range_are_clipped() -> None:
    extreme = Human(
        bbox=(-0.2, 0.0, 1.0, 1.3),
        global_orient=(1.2, -1.2) + (0,) * 7,
        pose_tokens=(0,) * 8,
        betas=(3.5, -9) + (0,) * 8,
        camera=(-2, 25, 19.001),
    )
    text = HumanPoseSerializer().serialize([extreme])
    assert text.startswith("human v0=0 v1=0 v2=999 v3=999 pose ")
    assert "global v0=999 v0=0 v0=500" in text
    assert "camera v0=0 v0=999 v0=999" in text
    assert "shape v0=999 v0=0 v0=500" in text
    assert all(int(v) <= 999 for v in re.findall(r"=(\d+)", text))


# ---------------------------------------------------------------------------------------------------- round trips


def test_parse_inverts_serialize_within_one_quantisation_step() -> None:
    ser = HumanPoseSerializer()
    (parsed,) = ser.parse(HUMAN_TEXT)
    assert parsed.pose_tokens == HUMAN.pose_tokens
    assert parsed.bbox == pytest.approx(HUMAN.bbox, abs=0.5 / 999 + 1e-12)
    assert parsed.global_orient == pytest.approx(HUMAN.global_orient, abs=0.5 / 499.5 + 1e-12)
    clipped_betas = [min(max(b, -3), 3) for b in HUMAN.betas]
    assert parsed.betas == pytest.approx(clipped_betas, abs=0.5 / 166.5 + 1e-12)
    assert parsed.camera == pytest.approx(HUMAN.camera, abs=0.5 / 49.95 + 1e-12)
    assert ser.serialize([parsed]) == HUMAN_TEXT


def test_parsed_values_are_the_inverse_affine_maps() -> None:
    (parsed,) = HumanPoseSerializer().parse(HUMAN_TEXT)
    assert parsed.bbox == (100 / 999, 200 / 999, 500 / 999, 899 / 999)
    assert parsed.global_orient[:2] == (1.0, (500 - 499.5) / 499.5)
    assert parsed.betas[3:5] == (3.0, -3.0)
    assert parsed.camera == pytest.approx(((50 - 49.95) / 49.95, (100 - 49.95) / 49.95, 19.0))


def test_shuffled_strings_parse_to_the_same_people_as_the_canonical_one() -> None:
    ser = HumanPoseSerializer()
    for seed in range(25):
        humans = ser.example(random.Random(seed))
        canonical = ser.serialize(humans)
        shuffled = ser.serialize(humans, random.Random(seed + 100))
        assert ser.parse(shuffled) == ser.parse(canonical), seed
        assert ser.serialize(ser.parse(canonical)) == canonical, seed


# --------------------------------------------------------------------------------------------------------- errors

BOX = "human v0=1 v1=2 v2=3 v3=4"
POSE = "pose " + " ".join(["v0=1"] * 8)
GLOBAL = "global " + " ".join(["v0=500"] * 9)
CAMERA = "camera v0=1 v0=2 v0=3"
SHAPE = "shape " + " ".join(["v0=500"] * 10)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        (f"{BOX} {POSE} {POSE} {CAMERA} {SHAPE}", 14),  # group repeated
        (f"{BOX} {GLOBAL} {POSE} {GLOBAL} {SHAPE}", 24),
        (f"{BOX} {SHAPE} {POSE} {SHAPE} {CAMERA}", 25),
        (f"{BOX} {CAMERA} {CAMERA} {POSE} {SHAPE}", 9),
        (f"{BOX} {POSE} {GLOBAL} {CAMERA}", 28),  # group missing at the end
        (f"{BOX} {POSE} {GLOBAL} {CAMERA} {BOX}", 28),  # next person before the fourth group
        (f"{BOX} hand v0=1 {POSE} {GLOBAL} {CAMERA}", 5),  # unknown group
        (f"{POSE} {GLOBAL} {CAMERA} {SHAPE}", 0),  # no 'human'
        ("human v0=1 v1=2 v3=4 v2=3", 3),  # bbox slots out of order
        (f"{BOX} pose v0=1 v1=600 v0=1 v0=1 v0=1 v0=1 v0=1 v0=1 {GLOBAL} {CAMERA} {SHAPE}", 7),  # v1 over 511
        (f"{BOX} pose v0=1 v2=1 v0=1 v0=1 v0=1 v0=1 v0=1 v0=1 {GLOBAL} {CAMERA} {SHAPE}", 7),  # not a code token
        (f"{BOX} {POSE} global v0=1 v0=2 {CAMERA} {SHAPE}", 17),  # too few rotation entries
        (f"{BOX} {POSE} {GLOBAL} camera v1=1 v0=2 v0=3 {SHAPE}", 25),
        (f"{BOX} {POSE} {GLOBAL} {CAMERA} {SHAPE} v0=1", 39),  # stray token after a person
        ("none human", 1),
        ("human none", 1),
        ("human", 1),  # truncated right after the keyword
    ],
)
def test_malformed_strings_raise_an_error_naming_the_token(text: str, position: int) -> None:
    assert_parse_error(HumanPoseSerializer(), text, position)


def test_repeated_group_names_the_group() -> None:
    err = assert_parse_error(HumanPoseSerializer(), f"{BOX} {POSE} {POSE} {CAMERA} {SHAPE}", 14)
    assert "'pose'" in str(err) and "not yet seen" in str(err)


@pytest.mark.parametrize(
    "bad",
    [
        human_dict(pose_tokens=(0,) * 7),  # the pose tokenizer has 8 tokens
        human_dict(pose_tokens=(1024,) + (0,) * 7),  # not a 1024-codebook index
        human_dict(pose_tokens=(-1,) + (0,) * 7),
        human_dict(global_orient=(0,) * 8),
        human_dict(betas=(0,) * 11),
        human_dict(camera=(0, 0)),
        human_dict(betas=(float("nan"),) + (0,) * 9),
        human_dict(bbox=(0.1, float("inf"), 0.2, 0.3)),
        {"bbox": (0.1, 0.2, 0.3, 0.4)},
    ],
)
def test_invalid_people_are_refused_when_writing(bad: dict) -> None:
    assert_refused_when_writing(HumanPoseSerializer(), [HUMAN, bad], "human 1")


def test_random_token_soup_raises_only_serialization_errors() -> None:
    alphabet = [
        "human",
        "pose",
        "global",
        "camera",
        "shape",
        "none",
        "v0=1",
        "v1=2",
        "v2=3",
        "v3=4",
        "v1=600",
        "v0=999",
        "v0=1000",
        "point",
        "[S_1]",
    ]
    person = f"{BOX} {POSE} {GLOBAL} {CAMERA}"  # a valid person first, to reach the later groups
    assert_token_soup_is_safe(HumanPoseSerializer(), alphabet, trials=300, max_tokens=30, valid_prefix=person)


# ------------------------------------------------------------------------------------------- official tokenizer


def test_format_keywords_are_single_official_tokens(ml4m_vocabulary: TextVocabulary) -> None:
    for word, token_id in KEYWORD_IDS.items():
        assert ml4m_vocabulary.encode(word) == [token_id], word


def test_serialized_people_encode_to_the_official_ids(ml4m_vocabulary: TextVocabulary) -> None:
    ids = ml4m_vocabulary.encode(HUMAN_TEXT)
    assert ids == [official_id(t) for t in HUMAN_TEXT.split()]
    assert ids[:10] == [6304, 304, 1404, 2704, 4103, 8620, 204, 715, 1204, 1715]  # human, bbox, pose v0=0 v0=511 v1=...
    ser = HumanPoseSerializer()
    for seed in range(20):
        text = ser.serialize(ser.example(random.Random(seed)), random.Random(seed))
        ids = ml4m_vocabulary.encode(text)
        assert ml4m_vocabulary.unk_id not in ids
        assert ids == [official_id(t) for t in text.split()]
        assert (len(ids) == 1) if text == "none" else (len(ids) % 39 == 0)
