"""Tokenizer families on a small synthetic store: configs from plugin specs, training beats the trivial baseline,
save/load round trips, the diffusion decoder, errors, pre-tokenisation with crops, the CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from fourm_core.apps.cli.main import main
from fourm_core.data.loader import StoreDataset
from fourm_core.labeling.runner import label_store
from fourm_core.registry import PluginError, Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore, StoreError
from fourm_core.tokenizers import Tokenizer, TokenizerError, TokenizerModelConfig, TrainConfig, config_from_spec
from fourm_core.tokenizers.families import FAMILIES, UnknownFamilyError, get_family, known_families
from fourm_core.tokenizers.families.divae import DiffusionDecoder
from fourm_core.tokenizers.families.mlp_memcodes import Memcodes, MLPMemcodes
from fourm_core.tokenizers.pretokenize import CROPS_PART, apply_crop, crop_settings, tokenize_store
from fourm_core.tokenizers.training import collect, evaluate, fit
from fourm_core.tokenizers.transforms import make_transform
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS, registry_with

LABELLED = [
    "rgb",
    "depth",
    "normal",
    "semseg",
    "canny_edge",
    "sam_edge",
    "sam_instance",
    "human_poses",
    "dinov2",
    "dinov2_global",
]
SMALL = {"dim": 64, "enc_depth": 1, "dec_depth": 1, "heads": 2, "mlp_width": 128, "mlp_blocks": 1}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    path = tmp_path_factory.mktemp("tok") / "w.zarr"
    source = SyntheticSource(80, 64, 3)
    store = create_source_store(path, source, 64, "tiny", 16)
    write_source(store, source)
    label_store(path, registry=registry, only=LABELLED, options=RANDOM_TEACHERS)
    return path


def small_tokenizer(registry: Registry, name: str, **extra: object) -> Tokenizer:
    spec = registry.get(name).spec
    config = config_from_spec(spec, "tiny").model_copy(update={**SMALL, **extra})
    if config.diffusion is not None:
        config = config.model_copy(update={"diffusion": config.diffusion.model_copy(update={"dim": 64, "depth": 1})})
    return Tokenizer(config)


def test_configs_follow_the_plugin_specs_in_both_presets(registry: Registry) -> None:
    paper = {m.name: config_from_spec(m.spec, "paper") for m in registry.modalities() if m.spec.tokenizer}
    assert (paper["depth"].n_tokens, paper["depth"].codebook_size, paper["depth"].family) == (196, 8192, "divae")
    assert (paper["dinov2"].n_tokens, paper["dinov2"].input_size, paper["dinov2"].patch_size) == (256, 16, 1)
    assert (paper["dinov2_global"].n_tokens, paper["dinov2_global"].codebook_size) == (16, 8192)
    assert (paper["human_poses"].n_tokens, paper["human_poses"].codebook_size) == (8, 1024)
    assert (paper["sam_instance"].n_tokens, paper["sam_instance"].input_size) == (16, 64)
    assert paper["canny_edge"].name == paper["sam_edge"].name == "edge"
    assert paper["tok_rgb"].source == ("rgb", "rgb")
    tiny = config_from_spec(registry.get("semseg").spec, "tiny")
    assert (tiny.n_tokens, tiny.codebook_size, tiny.num_classes, tiny.grid) == (64, 256, 134, 8)


@pytest.mark.parametrize(
    ("name", "steps", "metric", "higher_is_better"),
    [
        ("depth", 120, "abs_rel", False),
        ("semseg", 120, "pixel_acc", True),
        ("dinov2", 150, "cosine", True),
        ("dinov2_global", 300, "cosine", True),
        ("human_poses", 300, "mpjpe_mm", False),
        ("sam_instance", 200, "iou", True),
    ],
)
def test_a_short_training_beats_the_mean_baseline(
    registry: Registry, store_path: Path, name: str, steps: int, metric: str, higher_is_better: bool
) -> None:
    tok = small_tokenizer(registry, name)
    split = collect(AlignedStore.open(store_path, mode="r"), tok.config, registry, 0.2)
    record = fit(tok, split.train, TrainConfig(steps=steps, max_seconds=None, batch_size=16, lr=3e-3, warmup=10))
    assert record["trained"] and record["steps"] == steps
    result = evaluate(tok, split)
    bound, baseline = result["bound"][metric], result["baseline"][metric]
    assert (bound > baseline) if higher_is_better else (bound < baseline), (name, result)
    assert result["usage"]["codes_used"] * tok.vocab_size >= 4, f"collapsed codebook: {result['usage']}"


def test_save_and_load_give_the_same_tokens_and_reconstructions(
    registry: Registry, store_path: Path, tmp_path: Path
) -> None:
    tok = small_tokenizer(registry, "depth")
    split = collect(AlignedStore.open(store_path, mode="r"), tok.config, registry, 0.2)
    fit(tok, split.train, TrainConfig(steps=5, max_seconds=None, batch_size=8))
    tok.save_pretrained(tmp_path / "depth")
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == ["config.json", "model.safetensors"]
    again = Tokenizer.from_pretrained(tmp_path / "depth")
    ids = tok.encode_raw(split.held_out[:4])
    assert torch.equal(ids, again.encode_raw(split.held_out[:4]))
    assert ids.shape == (4, 64) and ids.dtype == torch.long and int(ids.max()) < 512
    torch.testing.assert_close(tok.decode(ids), again.decode(ids))
    torch.testing.assert_close(
        tok.decode(ids, sampler="diffusion", seed=1), again.decode(ids, sampler="diffusion", seed=1)
    )
    assert again.trained and again.transform.stats == {}


def test_an_untrained_diffusion_decoder_starts_at_the_plain_reconstruction(registry: Registry) -> None:
    tok = small_tokenizer(registry, "normal")
    ids = torch.randint(0, tok.vocab_size, (2, tok.n_tokens))
    torch.testing.assert_close(tok.decode(ids, sampler="diffusion", steps=4), tok.decode(ids), atol=1e-4, rtol=1e-4)


def test_bad_inputs_and_tokens_get_clear_errors(registry: Registry) -> None:
    tok = small_tokenizer(registry, "depth")
    with pytest.raises(TokenizerError, match="expected inputs of 64x64"):
        tok.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(TokenizerError, match="expected 64 tokens"):
        tok.decode(torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(TokenizerError, match=r"0\.\.511"):
        tok.decode(torch.full((1, 64), 600))
    with pytest.raises(TokenizerError, match="no diffusion decoder"):
        small_tokenizer(registry, "semseg").decode(torch.zeros(1, 64, dtype=torch.long), sampler="diffusion")
    with pytest.raises(TokenizerError, match="no trained tokenizer"):
        Tokenizer.from_pretrained("/nonexistent")


def test_memcodes_lookup_equals_its_eval_output() -> None:
    torch.manual_seed(0)
    q = Memcodes(32, 16, 4).eval()
    x = torch.randn(5, 32)
    out, ids = q(x)
    assert ids.shape == (5, 4)
    torch.testing.assert_close(q.lookup(ids), out)


def test_families_are_a_registry_with_one_module_each() -> None:
    assert known_families() == ["divae", "mask_vqvae", "mlp_memcodes", "vit_vqvae", "wordpiece"]
    assert get_family("divae").decoder is DiffusionDecoder and get_family("vit_vqvae").decoder is None
    assert get_family("mlp_memcodes").network is MLPMemcodes and not get_family("wordpiece").learned
    with pytest.raises(UnknownFamilyError, match="unknown tokenizer family 'vqgan'; known families: divae, "):
        get_family("vqgan")


def test_an_unknown_family_in_a_saved_config_is_a_clear_error(registry: Registry) -> None:
    saved = config_from_spec(registry.get("depth").spec, "tiny").model_dump()
    with pytest.raises(ValidationError, match="unknown tokenizer family 'vqgan'; known families"):
        TokenizerModelConfig.model_validate({**saved, "family": "vqgan"})


FAMILY_MODULE = """
from fourm_core.tokenizers.families import TokenizerFamily
from fourm_core.tokenizers.families.mlp_memcodes import MLPMemcodes


def configure(spec, preset, common):
    from fourm_core.tokenizers.config import TokenizerModelConfig

    return TokenizerModelConfig(**{**common, "family": "half_memcodes"}, codebook_size=16, n_tokens=2)


FAMILY = TokenizerFamily(name="half_memcodes", description="two tokens", configure=configure, network=MLPMemcodes)
"""


def test_adding_a_family_is_one_module_and_one_entry(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "half_memcodes_family.py").write_text(FAMILY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAMILIES, "half_memcodes", "half_memcodes_family")
    spec = registry.get("dinov2_global").spec
    declared = spec.model_copy(update={"tokenizer": spec.tokenizer.model_copy(update={"family": "half_memcodes"})})
    tok = Tokenizer(config_from_spec(declared, "tiny").model_copy(update=SMALL))
    assert (tok.n_tokens, tok.vocab_size, isinstance(tok.network, MLPMemcodes)) == (2, 16, True)
    assert tok.encode(torch.randn(3, tok.config.channels)).shape == (3, 2)


PLUGIN_TOKENIZER = """
from fourm_core.spec import TokenizerSpec


@hookimpl
def fourm_register_modalities(register):
    register(image_spec("thermal"))


@hookimpl
def fourm_register_tokenizers(register):
    register(TokenizerSpec(modality="thermal", factory="fourm_thermal_plugin:build"))


def build(spec, preset, directory):
    return {"modality": spec.name, "preset": preset, "directory": directory}
"""


def test_a_plugin_tokenizer_receives_its_weights_folder(
    make_dist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOURM_TOKENIZERS", raising=False)
    reg = registry_with(make_dist("fourm-thermal", "thermal", PLUGIN_TOKENIZER))
    built = reg.tokenizer("thermal", "tiny", tmp_path / "toks")
    assert built == {"modality": "thermal", "preset": "tiny", "directory": tmp_path / "toks"}
    assert reg.get("thermal").tokenizer("tiny")["directory"] is None  # untrained: no folder
    monkeypatch.setenv("FOURM_TOKENIZERS", str(tmp_path / "env"))
    assert reg.tokenizer("thermal", "paper")["directory"] == str(tmp_path / "env")


def test_registry_gives_untrained_or_trained_tokenizers(registry: Registry, tmp_path: Path) -> None:
    depth = registry.get("depth")
    untrained = depth.tokenizer()
    assert isinstance(untrained, Tokenizer) and not untrained.trained
    with pytest.raises(PluginError, match="no learned tokenizer"):
        registry.get("caption").tokenizer()
    with pytest.raises(PluginError, match="fourm tokenizer train depth"):
        depth.tokenizer(directory=tmp_path)


def test_crops_resample_by_kind_and_flip_vector_x() -> None:
    settings = crop_settings(5, 64, 3, seed=0)
    assert settings.shape == (3, 5) and list(settings[0]) == [0, 0, 64, 64, 0]
    assert (settings == crop_settings(5, 64, 3, seed=0)).all()
    normals = np.zeros((64, 64, 3), np.float32)
    normals[..., 0], normals[..., 2] = 0.6, -0.8
    flipped = apply_crop(normals, make_transform("unit_vectors", 3), (0, 0, 64, 64, 1), 64)
    np.testing.assert_allclose(flipped[..., 0], -0.6, atol=1e-6)
    classes = np.random.default_rng(0).integers(0, 5, (64, 64)).astype(np.int16)
    cropped = apply_crop(classes, make_transform("classes", 1, 134), (10, 4, 40, 30, 0), 64)
    assert cropped.dtype == np.int16 and set(np.unique(cropped)) <= set(range(5))
    features = np.random.default_rng(1).normal(size=(8, 8, 6)).astype(np.float16)
    half = apply_crop(features, make_transform("features", 6), (0, 0, 32, 32, 0), 64)
    assert half.shape == (8, 8, 6)  # the top-left quarter of the grid, upsampled
    np.testing.assert_allclose(half[0, 0], features[0, 0], atol=0.6)


def test_pretokenise_writes_tokens_resumes_and_refuses_other_weights(
    registry: Registry, store_path: Path, tmp_path: Path
) -> None:
    store = AlignedStore.open(store_path, mode="r")
    trained = {}
    for name in ("depth", "sam_instance", "dinov2_global", "human_poses"):
        tok = small_tokenizer(registry, name)
        split = collect(store, tok.config, registry, 0.2)
        fit(tok, split.train, TrainConfig(steps=3, max_seconds=None, batch_size=8))
        tok.save_pretrained(tmp_path / "toks" / tok.name)
        trained[name] = tok
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store_path, copy)
    results = {r.modality: r for r in tokenize_store(copy, tmp_path / "toks", registry, crops=2, seed=0)}
    assert results["depth"].done == 80 and results["sam_instance"].done == 80
    assert "not trained" in results["normal"].note
    out = AlignedStore.open(copy, mode="r")
    depth_tokens = out.read("depth/tokens", 9)["tokens"]
    assert depth_tokens.shape == (2, 64) and depth_tokens.dtype == np.int16
    expected = trained["depth"].encode_raw([out.read("depth/raw", 9)["depth"]])[0].numpy()
    np.testing.assert_array_equal(depth_tokens[0], expected)  # crop 0 is the full image
    assert out.read(CROPS_PART, 9)["settings"].shape == (2, 5)
    masks = out.read("sam_instance/tokens", 9)["tokens"]
    assert masks.shape == (len(out.read("sam_instance/raw", 9)["boxes"]), 16)
    globals_ = out.read("dinov2_global/tokens", 9)["tokens"]
    assert globals_.shape == (2, 8) and (globals_[0] == globals_[1]).all()
    forms = {"depth": "tokens", "sam_instance": "raw+tokens", "normal": "tokens"}
    mixed = StoreDataset(copy, ["depth", "sam_instance", "rgb", "normal"], form=forms)
    sample = mixed[9]
    np.testing.assert_array_equal(sample["depth"]["tokens"], depth_tokens)
    assert sorted(sample["sam_instance"]) == ["boxes", "instances", "tokens"]
    assert sample["sam_instance"]["tokens"].shape == masks.shape and sample["rgb"]["rgb"].shape == (64, 64, 3)
    assert sample["normal"] == {}  # no normal tokenizer was trained, so there are no normal tokens
    picked = StoreDataset(copy, ["depth", "dinov2_global"], form="tokens", crop="random", seed=1)
    crops = {picked[i]["crop"]["index"] for i in range(16)}
    assert crops == {0, 1}
    one = picked[9]
    k = one["crop"]["index"]
    np.testing.assert_array_equal(one["depth"]["tokens"], depth_tokens[k])
    np.testing.assert_array_equal(one["crop"]["settings"], out.read(CROPS_PART, 9)["settings"][k])
    assert one["dinov2_global"]["tokens"].shape == (8,)
    with pytest.raises(ValueError, match="has 2 crops"):
        StoreDataset(copy, ["depth"], form="tokens", crop=5)
    # sequences assembled from items + tokens at load time, in the official formats, round-trip through parse
    rows = StoreDataset(copy, ["sam_instance", "human_poses"], form="raw+tokens")
    with_people = next(i for i in range(80) if len(rows[i]["human_poses"]["humans"]))
    for name, index in (("sam_instance", 9), ("human_poses", with_people)):
        codec = registry.get(name).serializer()
        value = codec.from_store(rows[index][name])
        text = codec.serialize(value)
        assert codec.parse(text) == value if name == "sam_instance" else len(codec.parse(text)) == len(value)
    points = registry.get("sam_instance").serializer().from_store(rows[9]["sam_instance"])
    assert points and all(len(p.instances) == 1 and len(p.instances[0].tokens) == 16 for p in points)
    poses = registry.get("human_poses").serializer().from_store(rows[with_people]["human_poses"])
    np.testing.assert_array_equal([p.pose_tokens for p in poses], out.read("human_poses/tokens", with_people)["tokens"])
    drawn = registry.get("sam_instance").serializer().from_store(rows[9]["sam_instance"], random.Random(0))
    assert 1 <= len(drawn) <= 5
    again = {r.modality: r for r in tokenize_store(copy, tmp_path / "toks", registry, crops=2, seed=0)}
    assert again["depth"].note == "already tokenised" and again["depth"].done == 0
    fit(trained["depth"], [out.read("depth/raw", 0)["depth"]] * 4, TrainConfig(steps=2, max_seconds=None))
    trained["depth"].save_pretrained(tmp_path / "toks" / "depth")
    with pytest.raises(StoreError, match="refusing to mix"):
        tokenize_store(copy, tmp_path / "toks", registry, only=["depth"], crops=2, seed=0)


def test_cli_train_eval_list(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    out = tmp_path / "toks"
    args = ["tokenizer", "train", "edge", "sam_instance", "--store", str(store_path), "--out", str(out), "--steps", "4"]
    assert main(args) == 0
    report = json.loads((out / "edge" / "report.json").read_text())
    assert report["modalities"] == ["canny_edge", "sam_edge"] and report["training"]["steps"] == 4
    assert {"f1", "precision", "recall"} <= set(report["evaluation"]["bound"]) and "diffusion" in report["evaluation"]
    assert (out / "edge" / "reconstructions.png").stat().st_size > 0
    assert "tokenizer bounds" in capsys.readouterr().out
    assert main(["tokenizer", "eval", "edge", "--store", str(store_path), "--tokenizers", str(out)]) == 0
    assert (out / "edge-eval.png").exists()
    assert main(["tokenizer", "list", "--tokenizers", str(out)]) == 0
    assert "sam_instance" in capsys.readouterr().out
    assert main(["tokenizer", "train", "--store", str(store_path)]) == 2
