"""The synthetic world: deterministic, exactly aligned ground truth, plausible captions, every scene type."""

from __future__ import annotations

import numpy as np
import pytest

from fourm_core.sources.synthetic import SyntheticWorld, WorldConfig
from fourm_core.sources.synthetic.classes import THINGS, semantic_value
from fourm_core.sources.synthetic.layout import SCENE_TYPES

SKY = semantic_value("sky-other-merged")


@pytest.fixture(scope="module")
def scenes():
    world = SyntheticWorld(WorldConfig(image_size=48), seed=3)
    return [world[i] for i in range(24)]


def test_same_seed_same_bytes_and_different_seeds_differ() -> None:
    a = SyntheticWorld(WorldConfig(image_size=32), seed=7)[5]
    b = SyntheticWorld(WorldConfig(image_size=32), seed=7)[5]
    c = SyntheticWorld(WorldConfig(image_size=32), seed=8)[5]
    for name in ("rgb", "depth", "normal", "semantic", "instances", "albedo"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.caption == b.caption and a.boxes == b.boxes and a.humans == b.humans
    assert not np.array_equal(a.rgb, c.rgb)


def test_depth_is_zero_exactly_on_sky_and_normals_are_unit_elsewhere(scenes) -> None:
    for s in scenes:
        sky = s.semantic == SKY
        assert ((s.depth == 0) == sky).all()
        lengths = np.linalg.norm(s.normal[~sky], axis=-1)
        np.testing.assert_allclose(lengths, 1, atol=1e-4)
        assert (np.abs(s.normal[sky]) == 0).all()


def test_normals_face_the_camera_and_the_ground_points_up(scenes) -> None:
    thing_values = {v + 1 for v in THINGS.values()}
    for s in scenes:
        size = s.rgb.shape[0]
        v, u = np.mgrid[0:size, 0:size] + 0.5
        rays = np.stack([(u - size / 2) / s.camera["fx"], (v - size / 2) / s.camera["fy"], np.ones_like(u)], -1)
        hit = s.depth > 0
        assert (np.einsum("hwc,hwc->hw", s.normal, rays)[hit] <= 1e-6).all()
        ground = np.isin(
            s.semantic,
            [semantic_value(n) for n in ("road", "grass-merged", "sand", "snow", "floor-wood", "rug-merged")],
        )
        up_cam = np.asarray(s.camera["rotation"]).T @ np.array([0, 1.0, 0])
        if ground.any():
            np.testing.assert_allclose(s.normal[ground], np.broadcast_to(up_cam, s.normal[ground].shape), atol=1e-4)
        assert not np.isin(s.semantic[s.instances == 0], list(thing_values)).any()


def test_depth_agrees_with_the_ground_plane_geometry(scenes) -> None:
    for s in scenes:
        size = s.rgb.shape[0]
        rot, pos = np.asarray(s.camera["rotation"]), np.asarray(s.camera["position"])
        v, u = np.mgrid[0:size, 0:size] + 0.5
        rays = np.stack([(u - size / 2) / s.camera["fx"], (v - size / 2) / s.camera["fy"], np.ones_like(u)], -1)
        points = pos + (rays * s.depth[..., None]) @ rot.T  # back-projected world points
        ground = np.isin(
            s.semantic, [semantic_value(n) for n in ("road", "grass-merged", "snow", "floor-wood", "rug-merged")]
        )
        if ground.any():
            np.testing.assert_allclose(points[ground][:, 1], 0, atol=1e-3)


def test_boxes_enclose_their_instances_and_carry_the_semantic_class(scenes) -> None:
    for s in scenes:
        size = s.rgb.shape[0]
        for b in s.boxes:
            ys, xs = np.nonzero(s.instances == b["instance"])
            assert xs.min() / size == b["xmin"] and (xs.max() + 1) / size == b["xmax"]
            assert ys.min() / size == b["ymin"] and (ys.max() + 1) / size == b["ymax"]
            assert set(np.unique(s.semantic[s.instances == b["instance"]])) == {semantic_value(b["label"])}
        assert {b["instance"] for b in s.boxes} == set(np.unique(s.instances)) - {0}


def test_humans_are_posed_skeletons_inside_their_boxes(scenes) -> None:
    humans = [(s, h) for s in scenes for h in s.humans]
    assert len(humans) >= 5
    for s, h in humans:
        size = s.rgb.shape[0]
        rot = np.asarray(h["global_orient"]).reshape(3, 3)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-4)
        assert np.linalg.det(rot) == pytest.approx(1, abs=1e-4)
        assert len(h["body_pose"]) == 207 and np.isfinite(h["body_pose"]).all()
        assert len(h["betas"]) == 10 and len(h["camera"]) == 3 and np.asarray(h["joints_3d"]).shape == (24, 3)
        pelvis = np.asarray(h["joints_2d"][0]) / size
        x0, y0, x1, y1 = h["bbox"]
        margin = 0.15
        assert x0 - margin <= pelvis[0] <= x1 + margin and y0 - margin <= pelvis[1] <= y1 + margin


def test_captions_mention_only_visible_things(scenes) -> None:
    for s in scenes:
        visible = {b["label"] for b in s.boxes}
        words = f" {s.caption}"
        # "orange" is also a colour word: count the fruit only when it is not followed by another noun
        mentioned = {label for label in THINGS if f" {label}" in words and label != "orange"}
        fruit = any(f" {n} orange{p}" in words for n in ("an", "two", "three") for p in ".,s")
        mentioned |= {"orange"} if fruit else set()
        plural_people = "people" in s.caption
        assert mentioned <= visible | ({"person"} if plural_people else set()), (s.caption, visible)
        assert s.caption.endswith(".")


def test_every_scene_type_appears_and_any_resolution_works() -> None:
    world = SyntheticWorld(WorldConfig(image_size=24, humans=False), seed=0)
    assert {world[i].scene_type for i in range(40)} == set(SCENE_TYPES)
    for size in (17, 100):
        scene = SyntheticWorld(WorldConfig(image_size=size), seed=1)[0]
        assert scene.rgb.shape == (size, size, 3) and scene.depth.shape == (size, size)
