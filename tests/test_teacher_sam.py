"""SAM instances from SAM (issue 16), and SAM edges from them: a tiny random ``SamModel`` saved in the hub-cache layout
under the real id and loaded with ``HF_HUB_OFFLINE=1`` through the path ``facebook/sam-vit-huge`` takes.

Checked: the plan (SAM on a photo store, the source's exact instances on the synthetic world, sam_edge on top of
either), a photo store labelled end to end through the runner (instance map and boxes at the store size, provenance
naming the model), the skip line when nothing is cached offline, and that the felzenszwalb stand-in never stands in
for SAM unless named (an ``explicit`` labeler).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from fourm_core.labeling.runner import label_store, plan_labeling, raw_part  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.spec import ArraySpec  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from fourm_core.testing.official_hub import DEFAULT_COMMIT, add_snapshot  # noqa: E402
from fourm_sam_instance.plugin import SAM_VIT_H  # noqa: E402
from fourm_sam_instance.teachers import tiny_sam_config  # noqa: E402
from fourm_sam_instance.tokenizing import mask_items  # noqa: E402

ONLY = ["rgb", "sam_instance", "sam_edge"]
PHOTO_FIELDS = (ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),)
SYNTHETIC_FIELDS = (*PHOTO_FIELDS, ArraySpec(name="instances", dtype="int32", shape=("H", "W")))


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding a tiny random SamModel under SAM ViT-H's id, its IoU head biased high and its mask logits
    scaled up, so that masks pass SAM's default predicted-IoU and stability filters."""
    from transformers import SamImageProcessor, SamModel

    root = tmp_path_factory.mktemp("sam_hub")
    torch.manual_seed(0)
    model = SamModel(tiny_sam_config())
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e6)
        model.mask_decoder.iou_prediction_head.proj_out.bias.fill_(5.0)
    model.save_pretrained(root / "sam")
    SamImageProcessor().save_pretrained(root / "sam")
    add_snapshot(root / "cache", SAM_VIT_H.model_id, {name: root / "sam" / name for name in SAM_VIT_H.files})
    return root / "cache"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def cached(tiny_hub: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hub))
    return tiny_hub


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    return tmp_path / "empty"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def _store(path: Path, fields: tuple[ArraySpec, ...], n: int = 3, size: int = 32) -> AlignedStore:
    store = AlignedStore.create(path, n_samples=n, image_size=size, preset="tiny", block_size=4)
    store.ensure("source", fields)
    store.root.attrs["source"] = {"name": "test", "fields": [a.name for a in fields]}
    rng = np.random.default_rng(1)
    rows = []
    for _ in store.block_range(0):
        row: dict = {"rgb": rng.integers(0, 255, (size, size, 3), np.uint8)}
        if "instances" in {a.name for a in fields}:
            row["instances"] = np.zeros((size, size), np.int32)
            row["instances"][4:12, 6:20] = 7
        rows.append(row)
    store.write_block("source", 0, rows)
    return store


def _plans(store: AlignedStore, registry: Registry, **options: object) -> dict:
    return {p.name: p for p in plan_labeling(store, registry, only=ONLY, options=options)}


def test_photos_get_sam_and_the_synthetic_world_its_exact_instances(
    cached: Path, registry: Registry, tmp_path: Path
) -> None:
    photo = _plans(_store(tmp_path / "p.zarr", PHOTO_FIELDS), registry)
    sam = photo["sam_instance"]
    assert (sam.labeler, sam.model_id, sam.weights) == ("sam", "facebook/sam-vit-huge", "cached")
    assert photo["sam_edge"].labeler == "instance_edges"
    synthetic = _plans(_store(tmp_path / "s.zarr", SYNTHETIC_FIELDS), registry)
    assert synthetic["sam_instance"].labeler == "source" and synthetic["sam_edge"].labeler == "instance_edges"


def test_offline_without_weights_sam_instance_and_its_edges_skip_naming_the_model(
    empty_cache: Path, registry: Registry, tmp_path: Path
) -> None:
    plans = _plans(_store(tmp_path / "p.zarr", PHOTO_FIELDS), registry)
    sam = plans["sam_instance"]
    assert sam.labeler is None and sam.model_id == "facebook/sam-vit-huge" and sam.weights == "missing"
    assert "hf download facebook/sam-vit-huge" in sam.skip_reason and "\n" not in sam.skip_reason
    assert plans["sam_edge"].labeler is None and "'sam_instance' is not labelled" in plans["sam_edge"].skip_reason
    random = _plans(_store(tmp_path / "r.zarr", PHOTO_FIELDS), registry, allow_random_teachers=True)
    assert (random["sam_instance"].labeler, random["sam_instance"].weights) == ("sam", "random")


def test_felzenszwalb_runs_only_when_named(empty_cache: Path, registry: Registry, tmp_path: Path) -> None:
    (felz,) = [lab for lab in registry.labelers("sam_instance") if lab.name == "felzenszwalb"]
    assert felz.explicit and not felz.default and not any(r.kind.value == "env" for r in felz.requires)
    store = _store(tmp_path / "p.zarr", PHOTO_FIELDS)
    unnamed = _plans(store, registry)["sam_instance"]  # SAM is missing: a skip naming SAM, not the stand-in
    assert unnamed.labeler is None and unnamed.model_id == "facebook/sam-vit-huge"
    assert "stand-ins that run only when named: felzenszwalb (--labeler sam_instance=NAME)" in unnamed.skip_reason
    named = {p.name: p for p in plan_labeling(store, registry, {"sam_instance": "felzenszwalb"}, only=ONLY)}
    assert named["sam_instance"].labeler == "felzenszwalb" and named["sam_instance"].model_id is None
    assert named["sam_edge"].labeler == "instance_edges"
    plans = label_store(store.path, registry=registry, choices={"sam_instance": "felzenszwalb"}, only=ONLY)
    assert [(p.name, p.labeler, p.done) for p in plans][1] == ("sam_instance", "felzenszwalb", 3)
    prov = AlignedStore.open(store.path, mode="r").provenance(raw_part("sam_instance"))
    assert prov["labeler"] == "felzenszwalb" and "not SAM" in prov["method"]


def test_a_photo_store_is_labelled_with_sam_instances_and_their_edges(
    cached: Path, registry: Registry, tmp_path: Path
) -> None:
    store = _store(tmp_path / "p.zarr", PHOTO_FIELDS)
    plans = label_store(store.path, registry=registry, only=ONLY, options={"device": "cpu"})
    assert [(p.name, p.labeler, p.done, p.failed) for p in plans] == [
        ("rgb", "source", 3, 0),
        ("sam_instance", "sam", 3, 0),
        ("sam_edge", "instance_edges", 3, 0),
    ]
    store = AlignedStore.open(store.path, mode="r")
    prov = store.provenance(raw_part("sam_instance"))
    assert (prov["teacher"], prov["commit"], prov["weights"]) == ("facebook/sam-vit-huge", DEFAULT_COMMIT, "hub")
    assert (prov["resolution"], prov["dtype"], prov["points_per_side"]) == (1024, "fp32", 32)
    for i in range(3):
        row = store.read(raw_part("sam_instance"), i)
        instances, boxes = row["instances"], np.asarray(row["boxes"]).reshape(-1, 4)
        assert instances.shape == (32, 32) and instances.dtype == np.int32
        ids = np.unique(instances)
        assert len(boxes) >= 1 and set(ids.tolist()) - {0} == set(range(1, len(boxes) + 1))
        assert boxes.dtype == np.int32 and boxes.min() >= 0 and boxes.max() <= 31
        assert mask_items({"instances": instances, "boxes": boxes}, 8).shape == (len(boxes), 8, 8)
        edges = store.read(raw_part("sam_edge"), i)["edges"]
        assert edges.shape == (32, 32) and edges.dtype == np.uint8 and set(np.unique(edges)) <= {0, 255}
