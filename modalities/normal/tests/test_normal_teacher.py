"""Normals derived from a depth teacher: the geometry on exact planes, and the teacher (Depth Anything V2 metric,
transformers) on a tiny random checkpoint of the same class in a temporary hub cache, loaded offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fourm_core import plugin as fp
from fourm_core.testing.official_hub import add_snapshot
from fourm_normal.plugin import INDOOR_TEACHER, NORMAL

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SIZE = 32  #: the store's image size
RES = 56  #: the teacher's input side in these tests (4 x 4 patches of 14 px)


def plane_depth(normal: tuple[float, float, float], offset: float, side: int, fov: float) -> torch.Tensor:
    """z-depth of the plane ``n . X = offset`` seen by the centred pinhole camera the teacher assumes."""
    n = torch.tensor(normal, dtype=torch.float64)
    n = n / n.norm()
    focal = side / 2 / math.tan(math.radians(fov) / 2)
    u = (torch.arange(side, dtype=torch.float64) + 0.5 - side / 2) / focal
    uu, vv = torch.meshgrid(u, u, indexing="xy")
    rays = torch.stack((uu, vv, torch.ones_like(uu)), dim=-1)
    return (offset / (rays @ n)).float()


@pytest.mark.parametrize("fov", [45.0, 60.0, 90.0])
def test_a_tilted_plane_gives_its_own_normal_facing_the_camera(fov: float) -> None:
    from fourm_normal.teachers import normals_from_depth, resize_normals

    n = np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])
    depth = plane_depth(tuple(n), -3.0, 48, fov)
    assert (depth > 0).all()
    normals = normals_from_depth(depth[None], fov)
    assert normals.shape == (1, 48, 48, 3) and normals.dtype == torch.float32
    np.testing.assert_allclose(normals[0].numpy(), np.broadcast_to(n, (48, 48, 3)), atol=1e-4)
    np.testing.assert_allclose(resize_normals(normals, 16)[0].numpy(), np.broadcast_to(n, (16, 16, 3)), atol=1e-4)


def test_occlusion_edges_and_invalid_depth_do_not_bleed() -> None:
    from fourm_normal.teachers import normals_from_depth, resize_normals

    depth = torch.full((1, 24, 24), 2.0)
    depth[:, :, 12:] = 6.0  # two fronto-parallel walls with a jump between them
    depth[:, 4:8, 4:8] = 0.0  # a hole without depth
    normals = normals_from_depth(depth, 60.0)[0]
    assert (normals[4:8, 4:8] == 0).all()
    valid = depth[0] > 0
    np.testing.assert_allclose(normals[valid].numpy(), np.tile([0.0, 0.0, -1.0], (int(valid.sum()), 1)), atol=1e-6)
    with pytest.raises(ValueError, match="fov_degrees"):
        normals_from_depth(depth, 180.0)
    small = resize_normals(normals[None], 6)[0]  # 4 x 4 blocks: the hole is one invalid store pixel
    assert (small[1, 1] == 0).all() and (small.norm(dim=-1) > 0).sum() == 35
    np.testing.assert_allclose(small[0, 0].numpy(), [0.0, 0.0, -1.0], atol=1e-6)


def tiny_checkpoint(cache: Path, repo_id: str) -> Path:
    """A seeded tiny DepthAnythingForDepthEstimation, conv weights spread so its depth (and normals) vary."""
    from transformers import DepthAnythingForDepthEstimation

    from fourm_normal.teachers import tiny_config

    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(tiny_config())
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=(1.0 / module.weight[0].numel()) ** 0.5)
    folder = cache.parent / "save"
    model.save_pretrained(folder)
    files = {
        "config.json": folder / "config.json",
        "model.safetensors": folder / "model.safetensors",
        "preprocessor_config.json": json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}).encode(),
    }
    return add_snapshot(cache, repo_id, files)


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    return cache


def labeler(**options: object):  # noqa: ANN201 - the teacher class lives behind torch
    from fourm_normal.teachers import build

    ctx = fp.LabelContext(preset="tiny", image_size=SIZE, source_fields=("rgb",), options=dict(options))
    return build(NORMAL.spec, ctx, INDOOR_TEACHER.model_dump(mode="json"), resolution=RES, batch_size=2, fov_degrees=55)


def photo(index: int) -> fp.SampleView:
    rng = np.random.default_rng(index)
    return fp.SampleView(index, {"rgb": rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)}, {})


def test_the_teacher_stores_unit_camera_frame_normals_derived_from_depth(offline_cache: Path) -> None:
    tiny_checkpoint(offline_cache, INDOOR_TEACHER.model_id)
    teacher = labeler()
    out = teacher.label_batch([photo(0), photo(1), photo(2)])
    for value in out:
        normal = value["normal"]
        assert normal.shape == (SIZE, SIZE, 3) and normal.dtype == np.float32
        length = np.linalg.norm(normal, axis=-1)
        assert np.allclose(length[length > 0], 1.0, atol=1e-5) and (length > 0).mean() > 0.9
        # facing the camera: the normal points against the viewing ray of its pixel
        focal = SIZE / 2 / math.tan(math.radians(55) / 2)
        u = (np.arange(SIZE) + 0.5 - SIZE / 2) / focal
        rays = np.stack(np.broadcast_arrays(u[None, :], u[:, None], np.ones((SIZE, SIZE))), axis=-1)
        cosine = (normal * rays).sum(-1) / np.linalg.norm(rays, axis=-1)
        # (averaging teacher-resolution normals into a store pixel may tilt a grazing one a hair past 90 degrees)
        assert (cosine[length > 0] < 0.01).all() and (cosine[length > 0] < 0).mean() > 0.95
    assert np.abs(out[0]["normal"] - out[1]["normal"]).max() > 0.1
    prov = teacher.provenance()
    assert prov["method"] == f"derived from depth ({INDOOR_TEACHER.model_id})"
    assert prov["teacher"] == INDOOR_TEACHER.model_id and prov["weights"] == "hub" and prov["resolution"] == RES
    assert prov["fov_degrees"] == 55 and "pinhole" in prov["camera"] and prov["mean"] == [0.5] * 3


def test_offline_with_an_empty_cache_names_the_depth_model(offline_cache: Path) -> None:
    with pytest.raises(fp.TeacherUnavailable, match=r"Depth-Anything-V2-Metric-Indoor-Base-hf.*hf download"):
        labeler()
    assert labeler(allow_random_teachers=True).provenance()["weights"].startswith("random-init")


def test_the_plugin_declares_the_derived_labelers_after_the_source_copy() -> None:
    assert [lab.name for lab in NORMAL.labelers] == ["source", "depth_anything_indoor", "depth_anything_outdoor"]
    teacher = NORMAL.labelers[1]
    assert not teacher.default and teacher.options["model"]["model_id"] == INDOOR_TEACHER.model_id
    assert "derived from depth" in teacher.description.lower()
