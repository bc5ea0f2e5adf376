"""The semantic teachers (issue 16): Mask2Former for semseg, D-FINE for boxes, and semantic metadata from their labels.

Each teacher is exercised with a tiny random-initialised model of the same transformers class, saved in the hub-cache
layout under tmp and loaded with ``HF_HUB_OFFLINE=1`` through the path a real hub id takes; the checks are output
shapes, dtypes, value ranges, class mapping and the det string, the plan (teacher on photos, source copy on the
synthetic world) and the skip path (nothing cached, offline).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from fourm_core.labeling.api import LabelContext, SampleView, build_labeler  # noqa: E402
from fourm_core.labeling.hub import TeacherUnavailable  # noqa: E402
from fourm_core.labeling.runner import label_store, plan_labeling, raw_part  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.spec import ArraySpec  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from fourm_core.testing.official_hub import DEFAULT_COMMIT, add_snapshot  # noqa: E402
from fourm_det.classes import COCO_CLASSES  # noqa: E402
from fourm_det.plugin import TEACHER as DET_TEACHER  # noqa: E402
from fourm_det.serializer import Box, DetSerializer  # noqa: E402
from fourm_det.teachers import boxes_from_outputs, class_names  # noqa: E402
from fourm_det.teachers import tiny_config as det_config  # noqa: E402
from fourm_semseg.classes import PANOPTIC_CLASSES  # noqa: E402
from fourm_semseg.plugin import TEACHER as SEMSEG_TEACHER  # noqa: E402
from fourm_semseg.teachers import class_lookup  # noqa: E402
from fourm_semseg.teachers import tiny_config as semseg_config  # noqa: E402
from helpers import EXAMPLE_PLUGIN  # noqa: E402

#: the class the tiny detector is biased towards, so that its boxes pass the 0.6 threshold (index 2 = "car")
FAVOURED = 2


def _save(model: torch.nn.Module, folder: Path, preprocessor: dict) -> dict[str, Path]:
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return {name: folder / name for name in ("config.json", "model.safetensors", "preprocessor_config.json")}


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding tiny random Mask2Former (Swin) and D-FINE (HGNetV2) checkpoints under the real ids."""
    from transformers import DFineForObjectDetection, Mask2FormerForUniversalSegmentation

    root = tmp_path_factory.mktemp("tiny_hub")
    cache = root / "cache"
    torch.manual_seed(0)
    semseg = Mask2FormerForUniversalSegmentation(semseg_config())
    imagenet = {"do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    # filed under the pinned commit only (no refs/main), as `hf download --revision <commit>` leaves it
    add_snapshot(cache, SEMSEG_TEACHER.model_id, _save(semseg, root / "m2f", imagenet), SEMSEG_TEACHER.revision, ())
    torch.manual_seed(0)
    det = DFineForObjectDetection(det_config())
    with torch.no_grad():
        for name, param in det.named_parameters():
            if ("class_embed" in name or "enc_score_head" in name) and name.endswith("bias"):
                param[FAVOURED] = 6.0
    add_snapshot(cache, DET_TEACHER.model_id, _save(det, root / "dfine", {"do_normalize": False}))
    return cache


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def cached(tiny_hub: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_hub))
    return tiny_hub


@pytest.fixture
def empty_cache(tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    return tmp_path / "empty"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN})


def teacher(registry: Registry, modality: str, image_size: int = 32, resolution: int = 64, **options):
    """The modality's teacher labeler, built as the runner builds it (smaller input for speed)."""
    (lab,) = [lab for lab in registry.labelers(modality) if "hub" in {r.kind.value for r in lab.requires}]
    context = LabelContext(
        preset="tiny",
        image_size=image_size,
        source_fields=("rgb",),
        options={"device": "cpu", **options},
        modalities={m.name: m.spec for m in registry.modalities()},
    )
    spec = lab.model_copy(update={"options": {**lab.options, "resolution": resolution}})
    return build_labeler(spec, registry.get(modality).spec, context)


def photos(n: int, size: int = 32) -> list[SampleView]:
    rng = np.random.default_rng(0)
    return [SampleView(i, {}, {"rgb": {"rgb": rng.integers(0, 255, (size, size, 3), np.uint8)}}) for i in range(n)]


# -- semseg ---------------------------------------------------------------------------------------------------------


def test_semseg_class_lookup_matches_names_and_refuses_other_label_spaces() -> None:
    lut = class_lookup(dict(enumerate(PANOPTIC_CLASSES)))
    np.testing.assert_array_equal(lut, np.arange(1, 134))
    shuffled = {0: "rug-merged", 1: "person", 2: "wall-other", 3: "Traffic_Light"}
    assert class_lookup(shuffled).tolist() == [133, 1, 132, 10]
    with pytest.raises(ValueError, match="not COCO panoptic"):
        class_lookup({0: "wall", 1: "building", 2: "sky"} | {3: "person"})


def test_mask2former_gives_class_maps_at_the_store_size(cached: Path, registry: Registry) -> None:
    labeler = teacher(registry, "semseg", image_size=32)
    values = labeler.label_batch(photos(3))
    for value in values:
        semseg = value["semseg"]
        assert semseg.shape == (32, 32) and semseg.dtype == np.int16
        assert semseg.min() >= 1 and semseg.max() <= len(PANOPTIC_CLASSES)  # every pixel classed, index + 1
    again = teacher(registry, "semseg", image_size=32).label_batch(photos(3)[1:2])
    np.testing.assert_array_equal(again[0]["semseg"], values[1]["semseg"])  # per sample, not per batch
    prov = labeler.provenance()
    assert prov["teacher"] == SEMSEG_TEACHER.model_id
    assert prov["revision"] == prov["commit"] == SEMSEG_TEACHER.revision
    assert prov["weights"] == "hub" and prov["resolution"] == 64 and prov["dtype"] == "fp32"
    assert prov["output_size"] == 32 and "index + 1" in prov["classes"]


# -- det ------------------------------------------------------------------------------------------------------------


def test_det_class_names_accept_coco_spellings_and_refuse_others() -> None:
    detr = {0: "N/A", 1: "person", 2: "bicycle", 62: "tvmonitor", 63: "sofa"}
    assert class_names(detr) == {1: "person", 2: "bicycle", 62: "tv", 63: "couch"}
    assert class_names(dict(enumerate(COCO_CLASSES))) == dict(enumerate(COCO_CLASSES))
    with pytest.raises(ValueError, match="not COCO's"):
        class_names({0: "person", 1: "hamburger"})


def test_boxes_from_outputs_thresholds_ranks_and_converts_corners() -> None:
    logits = torch.full((1, 3, 4), -9.0)
    logits[0, 0, 1] = 3.0  # query 0: class 1, sigmoid 0.95
    logits[0, 2, 3] = 0.0  # query 2: class 3, sigmoid 0.5 (below 0.6)
    logits[0, 1, 0] = 1.0  # query 1: class 0, sigmoid 0.73
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.05, 0.9, 0.2, 0.4], [0.5, 0.5, 1.0, 1.0]]])
    (records,) = boxes_from_outputs(logits, boxes, {0: "cat", 1: "dog", 3: "cup"}, 0.6)
    assert [(r["label"], r["score"]) for r in records] == [("dog", 0.9526), ("cat", 0.7311)]
    assert records[0]["xmin"] == pytest.approx(0.4) and records[0]["ymax"] == pytest.approx(0.7)
    assert records[1]["xmin"] == 0.0 and records[1]["ymax"] == 1.0  # clipped to the picture


def test_dfine_gives_coco_boxes_and_the_official_det_string(cached: Path, registry: Registry) -> None:
    labeler = teacher(registry, "det")
    assert labeler.min_score == 0.6
    values = labeler.label_batch(photos(2))
    for value in values:
        boxes = value["boxes"]
        assert boxes and json.loads(json.dumps(boxes)) == boxes  # stored as JSON
        for record in boxes:
            box = Box.model_validate(record)  # corners ordered, in [0, 1]
            assert box.label == COCO_CLASSES[FAVOURED] and box.score >= 0.6
        text = DetSerializer().serialize(boxes)
        assert re.fullmatch(r"(v0=\d{1,3} v1=\d{1,3} v2=\d{1,3} v3=\d{1,3} car ?)+", text), text
        assert len(DetSerializer().parse(text)) == len(boxes)
    prov = labeler.provenance()
    assert prov["teacher"] == DET_TEACHER.model_id and prov["commit"] == DEFAULT_COMMIT
    assert prov["weights"] == "hub" and prov["min_score"] == 0.6
    assert prov["normalisation"].startswith("none")


# -- weights missing: skip, or random-init when allowed ---------------------------------------------------------------


@pytest.mark.parametrize("modality", ["semseg", "det"])
def test_without_weights_offline_the_teacher_is_unavailable_with_its_id(
    empty_cache: Path, registry: Registry, modality: str
) -> None:
    model_id = {"semseg": SEMSEG_TEACHER.model_id, "det": DET_TEACHER.model_id}[modality]
    with pytest.raises(TeacherUnavailable, match=re.escape(f"hf download {model_id}")) as failure:
        teacher(registry, modality)
    assert "\n" not in str(failure.value)
    if modality == "semseg":
        assert f"--revision {SEMSEG_TEACHER.revision}" in str(failure.value)
    random = teacher(registry, modality, allow_random_teachers=True, dtype="bf16")  # autocast on the CPU
    assert random.provenance()["weights"] == "random-init (seed 0)" and random.provenance()["dtype"] == "bf16"
    (value,) = random.label_batch(photos(1))
    assert set(value) == {"semseg"} if modality == "semseg" else {"boxes"}


# -- the plan and a photo store end to end ----------------------------------------------------------------------------

PHOTO_FIELDS = (
    ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
    ArraySpec(name="caption", dtype="text", ragged=True),
)
SYNTHETIC_FIELDS = (
    *PHOTO_FIELDS,
    ArraySpec(name="semantic", dtype="int16", shape=("H", "W")),
    ArraySpec(name="boxes", dtype="json", ragged=True),
)


def _store(path: Path, fields: tuple[ArraySpec, ...], n: int = 5, size: int = 32) -> AlignedStore:
    store = AlignedStore.create(path, n_samples=n, image_size=size, preset="tiny", block_size=4)
    store.ensure("source", fields)
    store.root.attrs["source"] = {"name": "test", "fields": [a.name for a in fields]}
    rng = np.random.default_rng(1)
    for block in range(store.n_blocks):
        rows = []
        for i in store.block_range(block):
            row = {"rgb": rng.integers(0, 255, (size, size, 3), np.uint8), "caption": f"Scene {i}. Two cars!"}
            if "semantic" in {a.name for a in fields}:
                row["semantic"] = np.full((size, size), 3, np.int16)
                row["boxes"] = [{"xmin": 0.1, "ymin": 0.1, "xmax": 0.5, "ymax": 0.5, "label": "car", "score": 1.0}]
            rows.append(row)
        store.write_block("source", block, rows)
    return store


ONLY = ["rgb", "caption", "det", "semseg", "metadata_semantic"]


def test_photo_store_plans_teachers_and_the_synthetic_world_its_ground_truth(
    cached: Path, registry: Registry, tmp_path: Path
) -> None:
    photo = {p.name: p for p in plan_labeling(_store(tmp_path / "p.zarr", PHOTO_FIELDS), registry, only=ONLY)}
    assert (photo["semseg"].labeler, photo["semseg"].model_id, photo["semseg"].weights) == (
        "mask2former",
        SEMSEG_TEACHER.model_id,
        "cached",
    )
    assert (photo["det"].labeler, photo["det"].model_id) == ("dfine", DET_TEACHER.model_id)
    assert photo["metadata_semantic"].labeler == "counts"
    synthetic = {p.name: p for p in plan_labeling(_store(tmp_path / "s.zarr", SYNTHETIC_FIELDS), registry, only=ONLY)}
    assert synthetic["semseg"].labeler == synthetic["det"].labeler == "source"


def test_photo_store_without_weights_skips_with_one_line_naming_the_model(
    empty_cache: Path, registry: Registry, tmp_path: Path
) -> None:
    plans = {p.name: p for p in plan_labeling(_store(tmp_path / "p.zarr", PHOTO_FIELDS), registry, only=ONLY)}
    for name, model in (("semseg", SEMSEG_TEACHER), ("det", DET_TEACHER)):
        assert plans[name].labeler is None and plans[name].model_id == model.model_id
        assert f"hf download {model.model_id}" in plans[name].skip_reason
        assert "\n" not in plans[name].skip_reason
    assert plans["metadata_semantic"].labeler == "counts"  # from whatever else is labelled (the caption here)


def test_semantic_metadata_of_photos_comes_from_the_teachers_labels(
    cached: Path, registry: Registry, tmp_path: Path
) -> None:
    store = _store(tmp_path / "p.zarr", PHOTO_FIELDS)
    plans = label_store(store.path, registry=registry, only=ONLY, options={"device": "cpu"})
    assert [(p.name, p.labeler, p.done, p.failed) for p in plans] == [
        ("caption", "source", 5, 0),
        ("rgb", "source", 5, 0),
        ("det", "dfine", 5, 0),
        ("semseg", "mask2former", 5, 0),
        ("metadata_semantic", "counts", 5, 0),
    ]
    store = AlignedStore.open(store.path, mode="r")
    assert store.provenance(raw_part("semseg"))["teacher"] == SEMSEG_TEACHER.model_id
    for i in range(5):
        semseg = store.read(raw_part("semseg"), i)["semseg"]
        boxes = store.read(raw_part("det"), i)["boxes"]
        values = store.read(raw_part("metadata_semantic"), i)["values"]
        assert semseg.shape == (32, 32) and semseg.dtype == np.int16
        assert values["n_coco_instances"] == len(boxes) > 0 and values["coco_instance_diversity"] == 1
        assert values["semantic_diversity"] == len(np.unique(semseg))
        assert values["caption_n_sentences"] == 2
