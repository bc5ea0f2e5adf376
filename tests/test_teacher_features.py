"""Hub teachers of the feature-map modalities (CLIP-B/16, DINOv2-B/14, ImageBind-H/14) and the global embeddings.

The plugins only declare their teachers (``fp.FeatureTeacherSpec`` given to ``fp.feature_map_modality``; the globals'
``fp.global_embedding_modality(..., model=)``); the core's ``TimmFeatureTeacher`` and ``copy_embedding`` run them.
Each teacher is a tiny random-initialised timm model of the real architecture (``vit_base_patch16_clip_224``,
``vit_base_patch14_dinov2``, ``vit_huge_patch14_clip_224``), exported with timm's own ``save_for_hf`` and filed in a
temporary Hugging Face cache under the real repo id, so the labeler loads it, offline, through exactly the path the
real weights take (``load_hub_model`` then ``timm.create_model("local-dir:...")``). The final norm of each tiny model
is set to a known scale and shift, so the tests can tell which layer was stored and that the file was really loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from fourm_core.labeling.api import LabelContext, LabelError, SampleView, build_labeler  # noqa: E402
from fourm_core.labeling.runner import label_store, plan_labeling, raw_part  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from fourm_core.testing.official_hub import add_snapshot  # noqa: E402
from helpers import EXAMPLE_PLUGIN  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: modality -> (hub id, timm name with its tag, stored width, patch, pooled array)
TEACHERS = {
    "clip": ("timm/vit_base_patch16_clip_224.openai", "vit_base_patch16_clip_224.openai", 512, 16, None),
    "dinov2": ("timm/vit_base_patch14_dinov2.lvd142m", "vit_base_patch14_dinov2.lvd142m", 768, 14, "cls"),
    "imagebind": ("timm/vit_huge_patch14_clip_224.laion2b", "vit_huge_patch14_clip_224.laion2b", 1280, 14, "cls"),
}
GLOBALS = {"dinov2_global": "dinov2", "imagebind_global": "imagebind"}
ALL = ("rgb", *TEACHERS, *GLOBALS)
#: the tiny models' final norm: features after it have per-token mean SHIFT and std SCALE (a LayerNorm at init)
SCALE, SHIFT = 2.0, 0.5


def declared(name: str):
    """The ``fp.FeatureTeacherSpec`` the plugin of ``name`` declares."""
    return importlib.import_module(f"fourm_{name}.plugin").TEACHER


def tiny_model(name: str) -> torch.nn.Module:
    """The tiny model of ``name``'s real class: the plugin's random-init config, another seed, a known final norm.
    Built with timm's default activation (what the hub config implies); the CLIP teacher must add QuickGELU."""
    cfg = dict(declared(name).random_config)
    torch.manual_seed(1234)
    model = timm.create_model(TEACHERS[name][1], pretrained=False, **cfg)
    with torch.no_grad():
        for block in model.blocks:  # large enough MLP weights for the activation function to show
            block.mlp.fc1.weight.normal_(0.0, 0.5)
            block.mlp.fc2.weight.normal_(0.0, 0.5)
        model.norm.weight.fill_(SCALE)
        model.norm.bias.fill_(SHIFT)
    return model.eval()


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding the three tiny teachers under their real repo ids (config.json + model.safetensors)."""
    from timm.models._hub import save_for_hf

    cache = tmp_path_factory.mktemp("hub")
    for name, (repo, *_) in TEACHERS.items():
        folder = tmp_path_factory.mktemp(name)
        save_for_hf(tiny_model(name), folder, safe_serialization=True)
        add_snapshot(cache, repo, {f: folder / f for f in ("config.json", "model.safetensors")})
    return cache


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Offline, with an empty hub cache (tests point HF_HUB_CACHE at ``hub_cache`` to have the teachers)."""
    empty = tmp_path / "empty-hub"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    yield empty


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


def context(registry: Registry, preset: str = "tiny", **options: object) -> LabelContext:
    return LabelContext(
        preset=preset,
        image_size=64,
        source_fields=("rgb",),
        options=options,
        modalities={m.name: m.spec for m in registry.modalities()},
    )


def views(n: int, size: int = 64) -> list[SampleView]:
    rng = np.random.default_rng(0)
    return [SampleView(i, {}, {"rgb": {"rgb": rng.integers(0, 255, (size, size, 3), np.uint8)}}) for i in range(n)]


def teacher(registry: Registry, name: str, preset: str = "tiny", **options: object):
    (lab,) = registry.labelers(name)
    return build_labeler(lab, registry.get(name).spec, context(registry, preset, **options))


def preprocess(image: np.ndarray, size: int) -> torch.Tensor:
    """What ml-4m feeds the teachers: the image at the teacher's size, ImageNet-normalised."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------------------------------------
# the teachers, loaded from the hub cache
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TEACHERS))
@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_teacher_stores_the_normed_tokens_of_the_cached_weights(
    name: str, preset: str, registry: Registry, hub_cache: Path, offline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    repo, _, width, patch, pooled = TEACHERS[name]
    lab = teacher(registry, name, preset)
    grid = {"tiny": 8, "paper": 224 // patch}[preset]
    assert lab.resolution == grid * patch and lab.dims() == {"h": grid, "w": grid, "C": width}
    batch = views(3 if preset == "tiny" else 1)
    out = lab.label_batch(batch)
    for value in out:
        assert set(value) == {"features"} | ({pooled} if pooled else set())
        assert value["features"].dtype == np.float16 and value["features"].shape == (grid, grid, width)
        assert np.isfinite(value["features"]).all()
        if pooled:
            assert value[pooled].dtype == np.float32 and value[pooled].shape == (width,)
            # x_norm_patchtokens / x_norm_clstoken: every token is the output of the (known) final LayerNorm
            tokens = np.concatenate([value["features"].reshape(-1, width).astype(np.float32), value[pooled][None]])
            np.testing.assert_allclose(tokens.mean(1), SHIFT, atol=0.02)
            np.testing.assert_allclose(tokens.std(1), SCALE, rtol=0.02)
    prov = lab.provenance()
    assert prov["teacher"] == repo and prov["weights"] == "hub" and prov["commit"]
    assert prov["resolution"] == grid * patch and prov["dtype"] == "fp32" and prov["normalisation"] == "imagenet"
    assert prov["mean"] == list(IMAGENET_MEAN) and prov["std"] == list(IMAGENET_STD)


def test_clip_projects_ln_post_tokens_with_quickgelu(registry: Registry, hub_cache: Path, offline: Path, monkeypatch):
    """ml-4m's ``visual(x, return_final_tokens_no_cls=True)``: ln_post(tokens)[:, 1:] @ proj, with OpenAI's QuickGELU
    (which the hub config does not name: the teacher adds it)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    lab = teacher(registry, "clip")
    (sample,) = views(1)
    (value,) = lab.label_batch([sample])
    state = tiny_model("clip").state_dict()  # at 224 px; the tiny preset runs 8 x 8 patches (128 px)
    state["pos_embed"] = timm.layers.resample_abs_pos_embed(state["pos_embed"], (8, 8), num_prefix_tokens=1)
    x = preprocess(sample.labels["rgb"]["rgb"], 128)
    refs = {}
    for act in ("quick_gelu", "gelu"):
        net = timm.create_model(
            "vit_base_patch16_clip_224", img_size=128, act_layer=act, **declared("clip").random_config
        ).eval()
        net.load_state_dict(state)
        with torch.no_grad():
            refs[act] = net.head(net.forward_features(x)[:, 1:]).reshape(8, 8, 512).numpy()
    got = value["features"].astype(np.float32)
    np.testing.assert_allclose(got, refs["quick_gelu"], atol=2e-3, rtol=1e-2)
    # the activation matters, and QuickGELU is the one used (fp16 storage error is far below the GELU difference)
    assert 4 * np.abs(got - refs["quick_gelu"]).max() < np.abs(got - refs["gelu"]).max()
    assert lab.provenance()["act_layer"] == "quick_gelu"


def test_random_init_only_when_allowed_and_said(registry: Registry, offline: Path) -> None:
    from fourm_core.labeling.hub import TeacherUnavailable

    with pytest.raises(TeacherUnavailable, match="timm/vit_base_patch14_dinov2.lvd142m.*hf download"):
        teacher(registry, "dinov2")
    lab = teacher(registry, "dinov2", allow_random_teachers=True)
    first = lab.label_batch(views(2))
    again = teacher(registry, "dinov2", allow_random_teachers=True).label_batch(views(2))
    np.testing.assert_array_equal(first[1]["features"], again[1]["features"])  # seeded: same stand-in every run
    assert first[0]["features"].shape == (8, 8, 768) and first[0]["cls"].shape == (768,)
    alone = lab.label(views(2)[1])  # a sample's output does not depend on the rest of its batch
    np.testing.assert_allclose(alone["features"], first[1]["features"], atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(alone["cls"], first[1]["cls"], atol=1e-4, rtol=1e-4)
    assert not np.array_equal(first[0]["features"], first[1]["features"])
    prov = lab.provenance()
    assert prov["weights"] == "random-init (seed 0)" and prov["weights_source"] == "random"
    assert prov["random_config"]["embed_dim"] == 768 and prov["architecture"] == "vit_base_patch14_dinov2"


def test_a_bad_image_fails_alone(registry: Registry, offline: Path) -> None:
    lab = teacher(registry, "clip", allow_random_teachers=True)
    bad = SampleView(5, {}, {"rgb": {"rgb": np.zeros((8, 8), np.float32)}})
    out = lab.label_batch([*views(1), bad])
    assert out[0]["features"].shape == (8, 8, 512)
    assert "uint8 HxWx3" in str(out[1])


def test_a_teacher_of_the_wrong_width_is_refused(registry: Registry, offline: Path) -> None:
    from fourm_core.labeling.features import FeatureTeacherSpec
    from fourm_core.labeling.teachers import TimmFeatureTeacher

    wrong = FeatureTeacherSpec.model_validate({**declared("clip").model_dump(), "feature_dim": 256})
    lab = TimmFeatureTeacher(registry.get("clip").spec, context(registry, allow_random_teachers=True), wrong)
    with pytest.raises(ValueError, match="projection width 512.*256-wide"):
        lab.label_batch(views(1))


# ------------------------------------------------------------------------------------------------------------------
# the declarations: plugins state the teacher, the core builds the labelers
# ------------------------------------------------------------------------------------------------------------------


def test_feature_teacher_spec_fills_what_the_plugin_leaves_out() -> None:
    from fourm_core import plugin as fp
    from fourm_core.labeling.features import NORMALISATIONS

    model = fp.HubModel(model_id="timm/vit_small_patch14_dinov2.lvd142m", library="timm")
    base = {"model": model, "patch_size": 14, "feature_dim": 384, "input_modality": "rgb", "input_array": "rgb"}
    spec = fp.FeatureTeacherSpec(**base)
    assert spec.architecture == "vit_small_patch14_dinov2"  # the repo name without its pretrained tag
    assert (spec.mean, spec.std) == NORMALISATIONS["imagenet"] and not spec.project and spec.pooled_array is None
    clip = fp.FeatureTeacherSpec(**base, normalisation="openai_clip")
    assert (clip.mean, clip.std) == NORMALISATIONS["openai_clip"]
    # the labeler options round-trip (the factory gets them back with the model)
    again = fp.FeatureTeacherSpec.model_validate({**clip.labeler_options(), "model": model.model_dump(mode="json")})
    assert again == clip
    with pytest.raises(ValueError, match="normalisation 'custom'"):
        fp.FeatureTeacherSpec(**base, normalisation="custom")
    assert fp.FeatureTeacherSpec(**base, normalisation="custom", mean=(0.5,) * 3, std=(0.5,) * 3).mean == (0.5,) * 3
    with pytest.raises(ValueError, match="differ from 'imagenet'"):
        fp.FeatureTeacherSpec(**base, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="timm model"):
        fp.FeatureTeacherSpec(**{**base, "model": model.model_copy(update={"library": "transformers"})})


@pytest.mark.parametrize("name", list(TEACHERS))
def test_feature_map_plugins_declare_one_core_teacher_labeler(registry: Registry, name: str) -> None:
    repo, _, width, patch, pooled = TEACHERS[name]
    (lab,) = registry.labelers(name)
    assert lab.name == "teacher" and lab.default and lab.factory == "fourm_core.labeling.features:feature_teacher"
    assert {"modality:rgb", f"hub:{repo}", "package:torch", "package:timm"} <= set(map(str, lab.requires))
    assert lab.options["model"]["model_id"] == repo and lab.options["feature_dim"] == width
    assert lab.options["patch_size"] == patch and lab.options["pooled_array"] == pooled
    spec = registry.get(name).spec
    assert spec.tokenizer.input_channels == width and spec.layout("paper").grid == 224 // patch
    assert {a.name for a in spec.storage} == {"features", "tokens"} | ({pooled} if pooled else set())


def test_global_plugins_name_the_teacher_of_their_map_modality(registry: Registry) -> None:
    for name, source in GLOBALS.items():
        glob = importlib.import_module(f"fourm_{name}.plugin")
        mapped = importlib.import_module(f"fourm_{source}.plugin")
        assert glob.TEACHER_MODEL.model_id == mapped.TEACHER_MODEL.model_id == TEACHERS[source][0]
        (lab,) = registry.labelers(name)
        assert lab.name == "from_teacher" and lab.factory == "fourm_core.labeling.features:copy_embedding"
        assert {f"modality:{source}", f"hub:{TEACHERS[source][0]}"} <= set(map(str, lab.requires))


@pytest.mark.parametrize("name", ["dinov2", "imagebind"])
def test_random_stand_ins_tell_photos_apart(registry: Registry, offline: Path, name: str) -> None:
    """The random-init stand-ins feed the global-embedding modalities of the synthetic world: their CLS must differ
    between images, or its tokenizer and retrieval have nothing to tell apart (a one-block random ViT's CLS is
    nearly one vector unless its blocks are scaled up: cosine 0.97 to the mean before ImageBind's fix)."""
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field()]
    rgb = [(resize(p, (64, 64), anti_aliasing=True) * 255).astype(np.uint8) for p in photos]
    out = teacher(registry, name, allow_random_teachers=True).label_batch(
        [SampleView(i, {}, {"rgb": {"rgb": image}}) for i, image in enumerate(rgb)]
    )
    cls = np.stack([o["cls"] for o in out]).astype(np.float64)
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    mean = unit.mean(0) / np.linalg.norm(unit.mean(0))
    assert float((unit @ mean).mean()) < 0.9


@pytest.mark.parametrize("name", list(GLOBALS))
def test_global_embedding_copies_the_teacher_cls(registry: Registry, name: str) -> None:
    source = GLOBALS[name]
    repo, _, width, *_ = TEACHERS[source]
    (lab,) = registry.labelers(name)
    inst = build_labeler(lab, registry.get(name).spec, context(registry))
    assert inst.dims() == {"C": width}
    cls = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    out = inst.label(SampleView(0, {}, {source: {"features": None, "cls": cls}}))
    assert out["embedding"].dtype == np.float32
    np.testing.assert_array_equal(out["embedding"], cls)
    with pytest.raises(LabelError, match=rf"expected \({width},\)"):
        inst.label(SampleView(1, {}, {source: {"cls": cls[:10]}}))
    with pytest.raises(LabelError, match="no 'cls' array"):
        inst.label(SampleView(2, {}, {source: {"features": None}}))
    with pytest.raises(LabelError, match=f"needs {source!r}"):
        inst.label(SampleView(3, {}, {}))
    prov = inst.provenance()
    assert prov["teacher"] == repo and prov["weights"] == f"as in {source}/raw (this part copies its 'cls' array)"


# ------------------------------------------------------------------------------------------------------------------
# plans and stores
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def photo_store(tmp_path: Path, offline: Path) -> Path:
    """A photo store: four ingested photos, no ground truth of any feature."""
    from fourm_core.apps.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    store = tmp_path / "p.zarr"
    assert main(["data", "ingest", str(photos), "--image-size", "32", "--out", str(store)]) == 0
    return store


def test_photo_plan_picks_the_hub_teachers(photo_store: Path, hub_cache: Path, monkeypatch, registry: Registry):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    plans = {p.name: p for p in plan_labeling(AlignedStore.open(photo_store, mode="r"), registry, only=ALL)}
    for name, (repo, *_) in TEACHERS.items():
        assert (plans[name].labeler, plans[name].model_id, plans[name].weights) == ("teacher", repo, "cached")
    for name, source in GLOBALS.items():
        assert (plans[name].labeler, plans[name].model_id) == ("from_teacher", TEACHERS[source][0])


def test_offline_empty_cache_skips_with_the_model_id(photo_store: Path, registry: Registry) -> None:
    plans = {p.name: p for p in plan_labeling(AlignedStore.open(photo_store, mode="r"), registry, only=ALL)}
    assert plans["rgb"].labeler is not None
    for name in (*TEACHERS, *GLOBALS):
        repo = TEACHERS[GLOBALS.get(name, name)][0]
        assert plans[name].labeler is None and plans[name].weights == "missing"
        assert repo in plans[name].skip_reason and f"hf download {repo}" in plans[name].skip_reason


def test_synthetic_world_runs_the_teacher_random_init_only_when_allowed(tmp_path: Path, offline, registry) -> None:
    """These modalities have no renderer ground truth: the synthetic world runs the same teacher labeler."""
    from fourm_core.apps.cli.main import main

    store = tmp_path / "w.zarr"
    assert main(["data", "synth", "--n", "4", "--image-size", "32", "--block-size", "4", "--out", str(store)]) == 0
    opened = AlignedStore.open(store, mode="r")
    plans = {p.name: p for p in plan_labeling(opened, registry, only=ALL, options={"allow_random_teachers": True})}
    assert {(plans[n].labeler, plans[n].weights) for n in TEACHERS} == {("teacher", "random")}
    assert {plans[n].labeler for n in GLOBALS} == {"from_teacher"}
    skipped = {p.name: p for p in plan_labeling(opened, registry, only=ALL)}
    assert all(skipped[n].labeler is None for n in (*TEACHERS, *GLOBALS))


def test_random_init_teachers_say_so_in_the_store(photo_store: Path, registry: Registry) -> None:
    only = ["rgb", "dinov2", "dinov2_global"]
    done = label_store(photo_store, registry=registry, only=only, options={"allow_random_teachers": True})
    assert [(p.name, p.labeler, p.done, p.failed) for p in done] == [
        ("rgb", "source", 4, 0),
        ("dinov2", "teacher", 4, 0),
        ("dinov2_global", "from_teacher", 4, 0),
    ]
    store = AlignedStore.open(photo_store, mode="r")
    prov = store.provenance(raw_part("dinov2"))
    assert prov["weights"] == "random-init (seed 0)" and prov["teacher"] == TEACHERS["dinov2"][0]
    sample = store.read(raw_part("dinov2"), 3)
    assert sample["features"].shape == (8, 8, 768) and sample["features"].dtype == np.float16
    np.testing.assert_array_equal(store.read(raw_part("dinov2_global"), 3)["embedding"], sample["cls"])


def test_photos_labelled_end_to_end(photo_store: Path, hub_cache: Path, monkeypatch, registry: Registry) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    done = {p.name: p for p in label_store(photo_store, registry=registry, only=list(ALL))}
    assert all(done[n].failed == 0 and done[n].skip_reason is None for n in ALL), done
    store = AlignedStore.open(photo_store, mode="r")
    for name, source in GLOBALS.items():
        rows = store.read_block(raw_part(name), 0)
        maps = store.read_block(raw_part(source), 0)
        assert len(rows) == 4
        for row, mapped in zip(rows, maps):
            assert row["embedding"].dtype == np.float32
            np.testing.assert_array_equal(row["embedding"], mapped["cls"])
        prov = store.provenance(raw_part(name))
        assert prov["teacher"] == TEACHERS[source][0]
    for name, (repo, *_rest) in TEACHERS.items():
        prov = store.provenance(raw_part(name))
        assert prov["teacher"] == repo and prov["weights"] == "hub" and prov["labeler"] == "teacher"
        assert store.read_block(raw_part(name), 0)[0]["features"].shape[:2] == (8, 8)
