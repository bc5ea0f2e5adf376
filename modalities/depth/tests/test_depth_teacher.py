"""The depth teacher (Depth Anything V2 metric, transformers) on a tiny random checkpoint of the same class, saved in
a temporary hub cache and loaded offline through the path a real hub id takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fourm_core import plugin as fp
from fourm_core.testing.official_hub import add_snapshot
from fourm_depth.plugin import DEPTH, INDOOR_TEACHER, OUTDOOR_TEACHER

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SIZE = 32  #: the store's image size
RES = 56  #: the teacher's input side in these tests (4 x 4 patches of 14 px)


def tiny_checkpoint(cache: Path, repo_id: str, estimation: str = "metric") -> Path:
    """A seeded tiny DepthAnythingForDepthEstimation (conv weights spread so its depth varies) in ``cache``."""
    from transformers import DepthAnythingForDepthEstimation

    from fourm_depth.teachers import spread_convs, tiny_config

    torch.manual_seed(0)
    config = tiny_config()
    config.depth_estimation_type = estimation
    model = DepthAnythingForDepthEstimation(config)
    spread_convs(model)
    folder = cache.parent / f"save-{repo_id.replace('/', '-')}"
    model.save_pretrained(folder)
    processor = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    files = {
        "config.json": folder / "config.json",
        "model.safetensors": folder / "model.safetensors",
        "preprocessor_config.json": json.dumps(processor).encode(),
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


def context(**options: object) -> fp.LabelContext:
    return fp.LabelContext(preset="tiny", image_size=SIZE, source_fields=("rgb",), options=dict(options))


def photo(index: int, shape: tuple[int, ...] = (40, 40, 3)) -> fp.SampleView:
    rng = np.random.default_rng(index)
    return fp.SampleView(index, {"rgb": rng.integers(0, 256, shape, dtype=np.uint8)}, {})


def labeler(model: fp.HubModel, **options: object):  # noqa: ANN201 - the teacher class lives behind torch
    from fourm_depth.teachers import build

    return build(DEPTH.spec, context(**options), model.model_dump(mode="json"), resolution=RES, batch_size=2)


def test_the_teacher_labels_metric_depth_at_the_store_size(offline_cache: Path) -> None:
    tiny_checkpoint(offline_cache, INDOOR_TEACHER.model_id)
    teacher = labeler(INDOOR_TEACHER)
    broken = fp.SampleView(3, {"rgb": np.zeros((8, 8), np.uint8)}, {})
    samples = [photo(0), photo(1), photo(2, (48, 30, 3)), broken]
    out = teacher.label_batch(samples)
    assert isinstance(out[3], fp.LabelError)  # a broken image fails alone
    depths = [o["depth"] for o in out[:3]]
    for depth in depths:
        assert depth.shape == (SIZE, SIZE) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= 20.0).all()
    assert depths[0].std() > 0 and not np.allclose(depths[0], depths[1])
    # a sample's depth does not depend on the batch it was labelled in
    np.testing.assert_allclose(teacher.label(photo(1))["depth"], depths[1], rtol=1e-4, atol=1e-4)
    prov = teacher.provenance()
    assert prov["teacher"] == INDOOR_TEACHER.model_id and prov["weights"] == "hub"
    assert prov["resolution"] == RES and prov["dtype"] == "fp32" and prov["commit"]
    assert prov["depth_estimation_type"] == "metric" and prov["max_depth"] == 20.0
    assert "Omnidata" in prov["paper_teacher"] and "metres" in prov["values"]


def test_a_relative_checkpoint_is_refused_not_stored_as_metres(offline_cache: Path) -> None:
    tiny_checkpoint(offline_cache, OUTDOOR_TEACHER.model_id, estimation="relative")
    with pytest.raises(ValueError, match="relative depth.*metric"):
        labeler(OUTDOOR_TEACHER)


def test_offline_with_an_empty_cache_names_the_model(offline_cache: Path) -> None:
    with pytest.raises(fp.TeacherUnavailable, match=r"Depth-Anything-V2-Metric-Indoor-Base-hf.*hf download"):
        labeler(INDOOR_TEACHER)


def test_random_init_only_when_allowed_and_said_so(offline_cache: Path) -> None:
    teacher = labeler(INDOOR_TEACHER, allow_random_teachers=True)
    depth = teacher.label(photo(0))["depth"]
    assert depth.shape == (SIZE, SIZE) and depth.std() > 0
    assert teacher.provenance()["weights"].startswith("random-init")


def test_the_plugin_declares_the_teachers_after_the_source_copy() -> None:
    names = [lab.name for lab in DEPTH.labelers]
    assert names == ["source", "depth_anything_indoor", "depth_anything_outdoor"]
    teacher = DEPTH.labelers[1]
    assert not teacher.default and teacher.options["model"]["model_id"] == INDOOR_TEACHER.model_id
    assert f"hub:{INDOOR_TEACHER.model_id}" in {str(r) for r in teacher.requires}
    assert teacher.options["resolution"] % 14 == 0
    with pytest.raises(ValueError, match="multiple of the 14"):
        from fourm_depth.teachers import build

        build(DEPTH.spec, context(allow_random_teachers=True), INDOOR_TEACHER.model_dump(mode="json"), resolution=50)
