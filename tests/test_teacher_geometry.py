"""Depth, normals and geometric metadata on a photo store, from the depth teacher (Depth Anything V2 metric) through
the real runner: a tiny checkpoint of the same transformers class in a temporary hub cache, offline.

The synthetic world keeps its exact renderer depth and normals (the source-copy labelers come first); a photo store
(no depth in its source) falls through to the teacher; without the weights, offline, the plan names the model and
``hf download``; geometric metadata is computed from whichever depth and normals the store holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fourm_core.apps.cli.main import main
from fourm_core.labeling.runner import label_store, plan_labeling
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore
from fourm_core.testing.official_hub import add_snapshot
from helpers import EXAMPLE_PLUGIN

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

INDOOR = "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf"
OUTDOOR = "depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf"
GEOMETRY = ["rgb", "depth", "normal", "metadata_geometric"]


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, offline, the installed plugins without the example one."""
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    return cache


def cache_tiny_depth_anything(cache: Path, repo_id: str) -> None:
    """A seeded tiny DepthAnythingForDepthEstimation saved as ``repo_id`` in the hub cache."""
    from transformers import DepthAnythingForDepthEstimation

    from fourm_depth.teachers import spread_convs, tiny_config

    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(tiny_config())
    spread_convs(model)
    folder = cache.parent / "tiny-depth-anything"
    model.save_pretrained(folder)
    add_snapshot(
        cache, repo_id, {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}
    )


def photo_store(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    store = root / "photos.zarr"
    assert main(["data", "ingest", str(photos), "--image-size", "32", "--out", str(store)]) == 0
    return store


def by_name(plans: list) -> dict:
    return {p.name: p for p in plans}


def test_a_photo_store_gets_teacher_depth_derived_normals_and_geometric_metadata(offline: Path, tmp_path: Path) -> None:
    cache_tiny_depth_anything(offline, INDOOR)
    path = photo_store(tmp_path)
    plans = by_name(label_store(path, only=GEOMETRY))
    assert plans["depth"].labeler == plans["normal"].labeler == "depth_anything_indoor"
    assert plans["depth"].model_id == plans["normal"].model_id == INDOOR and plans["depth"].weights == "cached"
    assert plans["metadata_geometric"].labeler == "geometry"
    assert all(plans[n].done == 3 and plans[n].failed == 0 for n in GEOMETRY)
    assert plans["normal"].provenance["method"] == f"derived from depth ({INDOOR})"
    assert plans["depth"].provenance["weights"] == "hub" and plans["depth"].provenance["teacher"] == INDOOR
    store = AlignedStore.open(path, mode="r")
    depth = store.read_block("depth/raw", 0)[0]["depth"]
    normal = store.read_block("normal/raw", 0)[0]["normal"]
    meta = store.read_block("metadata_geometric/raw", 0)
    assert depth.shape == (32, 32) and depth.dtype == np.float32 and (depth > 0).all()
    assert normal.shape == (32, 32, 3) and np.allclose(np.linalg.norm(normal, axis=-1), 1.0, atol=1e-3)
    assert all(0.0 <= row["values"]["geometric_complexity"] <= 1.0 for row in meta)


def test_offline_with_an_empty_cache_the_plan_names_the_teacher(tmp_path: Path) -> None:
    path = photo_store(tmp_path)
    plans = by_name(plan_labeling(AlignedStore.open(path), Registry(), only=GEOMETRY))
    for name in ("depth", "normal"):
        assert plans[name].labeler is None
        assert INDOOR in plans[name].skip_reason and f"hf download {INDOOR}" in plans[name].skip_reason
        assert "the source has no" in plans[name].skip_reason
    assert plans["metadata_geometric"].labeler is None and "not labelled" in plans["metadata_geometric"].skip_reason
    # the outdoor teacher is picked by name, and is skipped by its own id when it is not there
    chosen = by_name(plan_labeling(AlignedStore.open(path), Registry(), {"depth": "depth_anything_outdoor"}, GEOMETRY))
    assert OUTDOOR in chosen["depth"].skip_reason and INDOOR not in chosen["depth"].skip_reason


def test_the_synthetic_world_keeps_its_exact_depth_and_normals(offline: Path, tmp_path: Path) -> None:
    cache_tiny_depth_anything(offline, INDOOR)
    path = tmp_path / "w.zarr"
    source = SyntheticSource(2, 32, 5)
    write_source(create_source_store(path, source, 32, "tiny", 2), source)
    plans = by_name(plan_labeling(AlignedStore.open(path), Registry(), only=GEOMETRY))
    assert plans["depth"].labeler == plans["normal"].labeler == "source"
    assert plans["metadata_geometric"].labeler == "geometry"
