"""The synthetic world: deterministic, exactly aligned ground truth, true captions, every scene type, any size."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydantic import ValidationError

from fourm_core.sources.synthetic import Scene, SyntheticWorld, WorldConfig, render_scene
from fourm_core.sources.synthetic.caption import NUMBERS, plural
from fourm_core.sources.synthetic.classes import PANOPTIC_CLASSES, THING_CLASSES, class_index, is_thing, semantic_value
from fourm_core.sources.synthetic.config import SCENE_TYPE_NAMES
from fourm_core.sources.synthetic.geometry import intersect, normal
from fourm_core.sources.synthetic.humans import PARENTS
from fourm_core.sources.synthetic.objects import RECIPES
from fourm_core.sources.synthetic.shading import PALETTE

SKY = semantic_value("sky-other-merged")
#: Stuff classes of ground at height 0 (pavements, rugs and towels are raised a little).
FLAT_GROUND = ("road", "grass-merged", "sand", "snow", "floor-wood", "floor-other-merged", "playingfield")


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    world = SyntheticWorld(WorldConfig(image_size=48, humans=(1, 3)), seed=3)
    return [world[i] for i in range(30)]


def _rays(s: Scene) -> np.ndarray:
    """Camera-frame rays (z = 1) through every pixel centre."""
    size = s.rgb.shape[0]
    v, u = np.mgrid[0:size, 0:size] + 0.5
    c = s.camera
    return np.stack([(u - c["cx"]) / c["fx"], (v - c["cy"]) / c["fy"], np.ones_like(u)], -1)


def test_same_seed_same_bytes_and_different_seeds_differ() -> None:
    config = WorldConfig(image_size=32)
    a, b = SyntheticWorld(config, seed=7)[5], SyntheticWorld(config, seed=7)[5]
    c = SyntheticWorld(config, seed=8)[5]
    for name in ("rgb", "depth", "normal", "albedo", "semantic", "instances"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert (a.caption, a.boxes, a.humans, a.objects, a.camera) == (b.caption, b.boxes, b.humans, b.objects, b.camera)
    assert a.rgb.tobytes() != c.rgb.tobytes()
    seed = SyntheticWorld(config, seed=7).scene_seed(5)
    assert render_scene(seed, config).rgb.tobytes() == a.rgb.tobytes()


def test_layout_does_not_depend_on_the_image_size() -> None:
    small = SyntheticWorld(WorldConfig(image_size=24), seed=2)[4]
    large = SyntheticWorld(WorldConfig(image_size=72), seed=2)[4]
    assert small.scene_type == large.scene_type
    assert [(o["label"], o["position"]) for o in small.objects] == [(o["label"], o["position"]) for o in large.objects]
    assert small.camera["rotation"] == large.camera["rotation"]


def test_shapes_dtypes_and_value_ranges(scenes) -> None:
    for s in scenes:
        n = s.rgb.shape[0]
        assert s.original_size == (n, n)
        expected = {
            "rgb": ((n, n, 3), np.uint8),
            "depth": ((n, n), np.float32),
            "normal": ((n, n, 3), np.float32),
            "albedo": ((n, n, 3), np.float32),
            "semantic": ((n, n), np.int16),
            "instances": ((n, n), np.int32),
        }
        for name, (shape, dtype) in expected.items():
            arr = getattr(s, name)
            assert arr.shape == shape and arr.dtype == dtype, name
        assert np.isfinite(s.depth).all() and (s.depth >= 0).all()
        assert (s.albedo >= 0).all() and (s.albedo <= 1).all()
        assert (s.semantic >= 1).all() and (s.semantic <= len(PANOPTIC_CLASSES)).all()
        assert s.scene_type in SCENE_TYPE_NAMES


def test_depth_is_zero_exactly_on_the_sky_and_normals_are_unit_elsewhere(scenes) -> None:
    for s in scenes:
        sky = s.semantic == SKY
        assert ((s.depth == 0) == sky).all()
        np.testing.assert_allclose(np.linalg.norm(s.normal[~sky], axis=-1), 1, atol=1e-5)
        assert (s.normal[sky] == 0).all()
        assert (s.albedo[sky] > 0).all(), "the sky's albedo is its colour"


def test_instances_mark_exactly_the_thing_pixels(scenes) -> None:
    for s in scenes:
        things = (s.semantic >= 1) & (s.semantic <= len(THING_CLASSES))
        assert ((s.instances > 0) == things).all()
        for i in np.unique(s.instances[s.instances > 0]):
            assert len(np.unique(s.semantic[s.instances == i])) == 1, "one class per instance"


def test_boxes_enclose_their_instances_and_carry_the_semantic_class(scenes) -> None:
    for s in scenes:
        size = s.rgb.shape[0]
        for b in s.boxes:
            ys, xs = np.nonzero(s.instances == b["instance"])
            assert (b["xmin"], b["xmax"]) == (xs.min() / size, (xs.max() + 1) / size)
            assert (b["ymin"], b["ymax"]) == (ys.min() / size, (ys.max() + 1) / size)
            assert 0 <= b["xmin"] < b["xmax"] <= 1 and 0 <= b["ymin"] < b["ymax"] <= 1
            assert set(np.unique(s.semantic[s.instances == b["instance"]])) == {semantic_value(b["label"])}
            assert b["label"] in THING_CLASSES and b["score"] == 1.0
        assert sorted(b["instance"] for b in s.boxes) == sorted(set(np.unique(s.instances)) - {0})
        graph = {o["instance"]: o for o in s.objects}
        assert all(graph[b["instance"]]["visible"] and graph[b["instance"]]["label"] == b["label"] for b in s.boxes)


def test_normals_face_the_camera_and_the_ground_points_up(scenes) -> None:
    seen = 0
    for s in scenes:
        hit = s.depth > 0
        assert (np.einsum("hwc,hwc->hw", s.normal, _rays(s))[hit] <= 1e-6).all()
        ground = np.isin(s.semantic, [semantic_value(n) for n in FLAT_GROUND])
        up_cam = np.asarray(s.camera["rotation"]).T @ np.array([0, 1.0, 0])  # world up in the camera frame
        np.testing.assert_allclose(s.normal[ground], np.broadcast_to(up_cam, s.normal[ground].shape), atol=1e-5)
        seen += ground.sum()
    assert seen > 1000


def test_depth_back_projects_onto_the_ground_plane(scenes) -> None:
    for s in scenes:
        rot, pos = np.asarray(s.camera["rotation"]), np.asarray(s.camera["position"])
        points = pos + (_rays(s) * s.depth[..., None]) @ rot.T  # world points
        ground = np.isin(s.semantic, [semantic_value(n) for n in FLAT_GROUND])
        np.testing.assert_allclose(points[ground][:, 1], 0, atol=2e-3)


def test_normals_agree_with_finite_differences_of_depth(scenes) -> None:
    """Cross products of back-projected neighbours give the normal wherever the surface is smooth."""
    cosines = []
    for s in scenes:
        p = _rays(s) * s.depth[..., None]
        du, dv = p[1:-1, 2:] - p[1:-1, :-2], p[2:, 1:-1] - p[:-2, 1:-1]
        n_fd = np.cross(dv, du)  # right x down = forward, so down x right faces the camera
        n_fd /= np.maximum(np.linalg.norm(n_fd, axis=-1, keepdims=True), 1e-12)
        key = s.semantic.astype(np.int64) * 100_000 + s.instances
        core = key[1:-1, 1:-1]
        same = (core == key[1:-1, 2:]) & (core == key[1:-1, :-2]) & (core == key[2:, 1:-1]) & (core == key[:-2, 1:-1])
        z = s.depth
        d2 = np.abs(z[1:-1, 2:] + z[1:-1, :-2] - 2 * z[1:-1, 1:-1]) + np.abs(
            z[2:, 1:-1] + z[:-2, 1:-1] - 2 * z[1:-1, 1:-1]
        )
        smooth = same & (z[1:-1, 1:-1] > 0) & (z[1:-1, 1:-1] < 40) & (d2 < 0.02 * z[1:-1, 1:-1])
        cosines.append(np.einsum("hwc,hwc->hw", n_fd, s.normal[1:-1, 1:-1])[smooth])
    cos = np.concatenate(cosines)
    assert len(cos) > 5000
    assert np.median(cos) > 0.999 and np.mean(cos > 0.95) > 0.97


def test_humans_are_posed_skeletons_inside_their_boxes(scenes) -> None:
    humans = [(s, h) for s in scenes for h in s.humans]
    assert len(humans) >= 10
    inside_fraction = []
    for s, h in humans:
        size = s.rgb.shape[0]
        rot = np.asarray(h["global_orient"]).reshape(3, 3)
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rot) == pytest.approx(1)
        pose = np.asarray(h["body_pose"])
        assert pose.shape == (207,) and np.isfinite(pose).all()
        for r in pose.reshape(23, 3, 3):
            np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert len(h["betas"]) == 10 and np.abs(h["betas"]).max() <= 3
        j3, j2 = np.asarray(h["joints_3d"]), np.asarray(h["joints_2d"])
        assert j3.shape == (24, 3) and j2.shape == (24, 2) and (j3[:, 2] > 0).all()
        c = s.camera
        np.testing.assert_allclose(
            j2, np.c_[c["fx"] * j3[:, 0] / j3[:, 2] + c["cx"], c["fy"] * j3[:, 1] / j3[:, 2] + c["cy"]]
        )
        box = next(b for b in s.boxes if b["instance"] == h["instance"])
        assert h["bbox"] == [box["xmin"], box["ymin"], box["xmax"], box["ymax"]] and box["label"] == "person"
        x0, y0, x1, y1 = (np.asarray(h["bbox"]) * size).tolist()
        pad = 0.15 * max(x1 - x0, y1 - y0) + 1
        in_image = (j2 >= 0).all(1) & (j2 < size).all(1)
        inside = (j2[:, 0] >= x0 - pad) & (j2[:, 0] <= x1 + pad) & (j2[:, 1] >= y0 - pad) & (j2[:, 1] <= y1 + pad)
        if in_image.all():
            inside_fraction.append(inside.mean())
        s_cam = h["camera"][0]
        assert s_cam > 0
    assert np.median(inside_fraction) == 1.0 and np.mean(inside_fraction) > 0.9


def test_weak_perspective_camera_reproduces_the_joints() -> None:
    """HMR2's convention: pixel = crop centre + crop side * s / 2 * (joint - root + t) for the square crop."""
    world = SyntheticWorld(WorldConfig(image_size=96, objects=(0, 0), humans=(1, 1)), seed=5)
    checked = 0
    for i in range(12):
        s = world[i]
        for h in s.humans:
            j3, j2 = np.asarray(h["joints_3d"]), np.asarray(h["joints_2d"])
            x0, y0, x1, y1 = np.asarray(h["bbox"]) * 96
            side, centre = max(x1 - x0, y1 - y0), np.array([(x0 + x1) / 2, (y0 + y1) / 2])
            sc, tx, ty = h["camera"]
            pred = centre + side * sc / 2 * (j3[:, :2] - j3[0, :2] + np.array([tx, ty]))
            # exact for the root; the weak-perspective error grows with the body's depth extent
            np.testing.assert_allclose(pred[0], j2[0], atol=1e-6)
            assert np.abs(pred - j2).max() < 0.25 * side
            checked += 1
    assert checked >= 5


def test_bodies_have_varied_shapes_and_poses(scenes) -> None:
    humans = [h for s in scenes for h in s.humans]
    betas = np.asarray([h["betas"] for h in humans])
    assert betas.std(0).min() > 0.4
    assert len({h["pose"] for h in humans}) >= 4
    heights = [np.ptp(np.asarray(h["joints_3d"])[:, 1]) for h in humans if h["pose"] in ("standing", "walking")]
    assert 1.1 < np.median(heights) < 1.8  # head joint to feet in metres


_COUNT = re.compile(r"\b(a|an|" + "|".join(NUMBERS.values()) + r") (?:(" + "|".join(PALETTE) + r") )?")


def test_captions_mention_only_visible_things_with_true_counts_and_colours(scenes) -> None:
    labels = set(RECIPES) | {"person"}
    for s in scenes:
        caption = s.caption
        assert caption.endswith(".") and 1 <= caption.count(". ") + 1 <= 3
        visible = [o for o in s.objects if o["visible"]]
        counts: dict[str, int] = {}
        for o in visible:
            counts[o["label"]] = counts.get(o["label"], 0) + 1
        words = f" {caption}"
        for label in labels:
            forms = {label, plural(label)} if label != "person" else {"person", "people"}
            if label == "orange":  # also a colour word: count the fruit only as a noun phrase
                forms = {"an orange.", "an orange,", "an orange and", "oranges"}
            if any(f" {f}" in words for f in forms):
                assert label in counts, (caption, counts)
        # the first sentence counts its classes exactly, colours included
        first = caption.split(". ")[0]
        for label, n in counts.items():
            noun = re.escape(plural(label) if n > 1 else {"skis": "pair of skis"}.get(label, label))
            for m in re.finditer(r"\b(a|an|\w+) (?:(\w+) )?" + noun + r"\b", first):
                if m.group(1) in NUMBERS.values() or m.group(1) in ("a", "an"):
                    word = m.group(1)
                    assert (1 if word in ("a", "an") else list(NUMBERS.values()).index(word) + 1) == n, (first, label)
                    if m.group(2) in PALETTE:
                        assert all(o["colour"] == m.group(2) for o in visible if o["label"] == label)
        biggest = max(visible, key=lambda o: o["pixels"], default=None)
        if biggest is not None:
            n = counts[biggest["label"]]
            name = plural(biggest["label"]) if n > 1 else biggest["label"]
            assert name in first, (first, biggest["label"])
            if n > 1:
                assert NUMBERS[n] in first


def test_relations_in_captions_follow_the_geometry() -> None:
    world = SyntheticWorld(WorldConfig(image_size=32, objects=(4, 8)), seed=11)
    checked = 0
    for i in range(40):
        s = world[i]
        by_name: dict[str, list[dict]] = {}
        for o in s.objects:
            if o["visible"]:
                key = f"the person in {o['colour']}" if o["label"] == "person" else f"the {o['colour']} {o['label']}"
                by_name.setdefault(key, []).append(o)
        for m in re.finditer(
            r"(the [\w ]+?) is (to the left of|to the right of|in front of|behind) (the [\w ]+?)\.", s.caption
        ):
            a, rel, b = by_name.get(m.group(1)), m.group(2), by_name.get(m.group(3))
            if not a or not b or len(a) > 1 or len(b) > 1:
                continue
            (ax, _, az), (bx, _, bz) = a[0]["position_camera"], b[0]["position_camera"]
            assert {"to the left of": ax < bx, "to the right of": ax > bx, "in front of": az < bz, "behind": az > bz}[
                rel
            ]
            checked += 1
    assert checked >= 5


def test_every_scene_type_appears_and_restricting_them_works() -> None:
    world = SyntheticWorld(WorldConfig(image_size=16, humans=(0, 0), objects=(0, 1)), seed=0)
    assert {world[i].scene_type for i in range(60)} == set(SCENE_TYPE_NAMES)
    only = SyntheticWorld(WorldConfig(image_size=16, scene_types=("beach",)), seed=0)
    assert {only[i].scene_type for i in range(5)} == {"beach"}
    with pytest.raises(ValidationError):
        WorldConfig(scene_types=("moon",))
    with pytest.raises(ValidationError):
        WorldConfig(humans=(3, 1))


def test_scene_types_are_recognisable_from_pixels() -> None:
    """Leave-one-out nearest neighbour on 8x8 thumbnails recovers the scene type well above chance (1/6)."""
    world = SyntheticWorld(WorldConfig(image_size=32), seed=21)
    scenes = [world[i] for i in range(72)]
    x = np.stack([s.rgb.reshape(8, 4, 8, 4, 3).mean((1, 3)).reshape(-1) for s in scenes]).astype(np.float64)
    y = np.array([s.scene_type for s in scenes])
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.7


def test_humans_and_object_ranges_are_respected() -> None:
    none = SyntheticWorld(WorldConfig(image_size=16, humans=(0, 0)), seed=1)
    assert all(not none[i].humans and all(o["label"] != "person" for o in none[i].objects) for i in range(6))
    few = SyntheticWorld(WorldConfig(image_size=16, objects=(0, 2), humans=(0, 1)), seed=1)
    for i in range(10):
        objs = few[i].objects
        assert sum(o["label"] != "person" for o in objs) <= 2 and sum(o["label"] == "person" for o in objs) <= 1


@pytest.mark.parametrize("size", [17, 48, 100, 224])
def test_any_resolution_works(size: int) -> None:
    s = render_scene(seed=4, config=WorldConfig(image_size=size))
    assert s.rgb.shape == (size, size, 3) and s.depth.shape == (size, size) and s.normal.shape == (size, size, 3)
    assert s.camera["cx"] == size / 2 and s.camera["width"] == size


def test_the_class_table_is_coco_panoptic() -> None:
    assert len(THING_CLASSES) == 80 and len(PANOPTIC_CLASSES) == 133
    expected = {
        0: "person",
        2: "car",
        32: "sports ball",
        39: "bottle",
        41: "cup",
        45: "bowl",
        54: "donut",
        56: "chair",
        58: "potted plant",
        60: "dining table",
        62: "tv",
        73: "book",
        77: "teddy bear",
        80: "banner",
        87: "floor-wood",
        100: "road",
        119: "sky-other-merged",
        132: "rug-merged",
    }
    assert all(PANOPTIC_CLASSES[i] == name for i, name in expected.items())
    assert semantic_value("person") == 1 and is_thing(1) and not is_thing(81) and class_index("rug-merged") == 132
    assert set(RECIPES) <= set(THING_CLASSES)
    try:
        from fourm_semseg.classes import PANOPTIC_CLASSES as PLUGIN
    except ImportError:
        return
    assert tuple(PLUGIN) == PANOPTIC_CLASSES


def test_primitive_kernels_hit_where_the_shapes_are() -> None:
    o = np.zeros((3, 1))
    d = np.array([[0.0], [0.0], [1.0]])
    axes = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    cases = {
        "plane": ((0, 0, -1, -5), 5.0),
        "sphere": ((0, 0, 5, 1), 4.0),
        "box": ((0, 0, 5, 1, 1, 2, *axes), 3.0),
        "capsule": ((0, -1, 5, 0, 1, 5, 0.5), 4.5),
        "cone": ((0, 0, 4, 0, 0, 6, 1.0, 0.5), 4.0),  # along the ray: the cap at a
        "torus": ((0, 0, 5, 0, 1, 0, 1.0, 0.25), 3.75),  # the ray passes the hole: hits the near side of the ring
    }
    for kind, (params, expected) in cases.items():
        q = np.asarray(params, np.float64)[:, None]
        t = intersect(kind, o, d, q, 1e-6)
        assert t[0] == pytest.approx(expected, abs=1e-4), kind
        n = normal(kind, o + d * t, q)
        assert (n[:, 0] / np.linalg.norm(n[:, 0]))[2] == pytest.approx(-1, abs=1e-3), kind
        assert np.isinf(intersect(kind, o, -d, q, 1e-6)[0]), f"{kind} behind the ray"


def test_preview_grid_is_written(tmp_path) -> None:
    from PIL import Image

    from fourm_core.sources.synthetic.preview import PANELS, scene_grid_png

    scenes = [render_scene(seed=k, config=WorldConfig(image_size=24)) for k in range(2)]
    path = scene_grid_png(scenes, tmp_path / "grid.png")
    assert Image.open(path).size == (24 * len(PANELS), 48)


def test_skeleton_tree_is_smpl() -> None:
    assert len(PARENTS) == 24 and PARENTS[0] == -1 and all(p < j for j, p in enumerate(PARENTS) if j)
