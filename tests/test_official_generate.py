"""End to end from a hub id: ``fourm generate --model EPFL-VILAB/4M-21_B --tokenizers official`` on a photo, and
the recipes of ml-4m's generation notebooks through ``fourm_core.FourM``, offline on a local hub cache.

The cache is built by :func:`fourm_core.testing.official_hub.build_official_hub_cache` in the hub's own layout: the
official model config with 4M-21's full key set at width 16, and every official tokenizer repo at the CI fixtures'
reduced sizes (ml-4m's published classes and settings: ViT VQ-VAEs, patched U-Net and UViT DiVAEs, Memcodes MLPs),
random weights. Random weights write random text, so sequence targets mostly do not parse; what is checked is that
nothing crashes, every target is written and drawn, and unparsed text says so. ml-4m's numbers are checked elsewhere
(tests/test_official_*.py on the fixtures under tests/fixtures/ml4m).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fourm_core.apps.cli.main import main
from fourm_core.testing.official_hub import (
    TOKENIZER_CONFIGS,
    build_official_hub_cache,
    official_model_config,
    tokenizer_config,
)
from fourm_core.testing.plugin import ML4M_TOKENIZER
from fourm_core.tokenizers.official import resolve as official_resolve
from helpers import EXAMPLE_PLUGIN

MODEL = "EPFL-VILAB/4M-21_B"
#: the issue's command line
TARGETS = "caption,det,depth,normal,semseg,human_poses,sam_instance,dinov2_global,color_palette,metadata"
#: every modality with an official tokenizer repo (canny and SAM edges share one)
TOKENIZERS = (
    "tok_rgb",
    "depth",
    "normal",
    "semseg",
    "clip",
    "dinov2",
    "dinov2_global",
    "imagebind",
    "imagebind_global",
    "canny_edge",
    "sam_instance",
    "human_poses",
)
#: every target of 4M-21 by modality name, for the "-> everything" recipes
EVERYTHING = [
    "caption",
    "det",
    "tok_rgb",
    "depth",
    "normal",
    "semseg",
    "clip",
    "dinov2",
    "dinov2_global",
    "imagebind",
    "imagebind_global",
    "canny_edge",
    "sam_edge",
    "sam_instance",
    "human_poses",
    "color_palette",
    "metadata",
]
TOOLS = Path(__file__).resolve().parents[1] / "tools" / "ml4m_fixtures"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> dict[str, Any]:
    """The model and all twelve tokenizer repos, tiny, in a hub cache (built once: about ten seconds)."""
    torch.set_num_threads(1)
    return build_official_hub_cache(tmp_path_factory.mktemp("hf") / "hub", tokenizers=TOKENIZERS, registry=registry)


@pytest.fixture
def offline(hub: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    """``HF_HUB_CACHE`` at the built cache, ``HF_HUB_OFFLINE=1``, fresh official-tokenizer modules."""
    torch.set_num_threads(1)
    for name in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME", "FOURM_OFFICIAL_VOCAB", "FOURM_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub["cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)  # the CLI builds its own registry
    official_resolve.clear_cache()
    yield hub["cache"]
    official_resolve.clear_cache()


@pytest.fixture(scope="module")
def vocab(fourm_ml4m_data: Path) -> Path:
    """ml-4m's WordPiece file (the shared data folder; skipped when absent)."""
    path = fourm_ml4m_data / ML4M_TOKENIZER
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo (scikit-image's astronaut, 512 px) as a JPEG."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(path, quality=90)
    return path


# ---------------------------------------------------------------------------------------------- the cache


def test_published_tokenizer_configs_are_the_fixture_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    """The configs the cache builder publishes are those the ml-4m fixture scripts build ml-4m's classes with."""
    monkeypatch.syspath_prepend(str(TOOLS))  # plain-data tables: the scripts import ml-4m only in main()
    for name in ("make_divae", "make_vqvae"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import make_divae
    import make_vqvae

    for name, entry in make_vqvae.TOKENIZERS.items():
        assert TOKENIZER_CONFIGS[name] == entry[0], name
    for name in ("rgb_16k_224-448", "depth_8k_224-448", "normal_8k_224-448"):
        assert TOKENIZER_CONFIGS[name] == make_divae.TOKENIZERS[name], name
    # the released edge tokenizer: the UViT decoder its file size points to
    assert TOKENIZER_CONFIGS["edge_8k_224-512"] == make_divae.TOKENIZERS["edge_8k_224-512_uvit"]
    assert "fourm_size_overrides" not in tokenizer_config("depth_8k_224-448", "full")
    assert set(tokenizer_config("depth_8k_224-448")["fourm_size_overrides"]) == {"encoder", "decoder"}


#: 4M-21's model keys as ml-4m's cc12m data config lists them (reference section 1.2)
DOMAINS_IN_4M21 = (
    "caption",
    "t5_caption",
    "det",
    "metadata",
    "rgb@224",
    "tok_rgb@224",
    "tok_normal@224",
    "tok_depth@224",
    "tok_semseg@224",
    "tok_clip@224",
    "human_poses",
    "tok_dinov2@224",
    "tok_dinov2_global",
    "tok_imagebind@224",
    "tok_imagebind_global",
    "tok_sam_edge@224",
    "tok_canny_edge@224",
    "color_palette",
    "sam_instance",
)


def test_model_config_has_the_4m21_key_set_at_the_published_sizes() -> None:
    config = official_model_config("B")
    assert sorted(config["domains_in"]) == sorted(DOMAINS_IN_4M21)
    assert sorted(config["domains_out"]) == sorted(d for d in DOMAINS_IN_4M21 if d not in ("rgb@224", "t5_caption"))
    assert (config["dim"], config["encoder_depth"], config["decoder_depth"], config["num_heads"]) == (768, 12, 12, 12)
    assert config["act_layer"] == "SiLU" and config["gated_mlp"] and not config["norm_bias"]


def test_cache_is_what_huggingface_hub_finds_offline(hub: dict[str, Any]) -> None:
    from huggingface_hub import snapshot_download

    cache = hub["cache"]
    folder = Path(snapshot_download(MODEL, cache_dir=cache, local_files_only=True))
    assert folder == hub["model"] and {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    weights = folder / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent.name == "blobs"
    assert len(hub["tokenizers"]) == 12  # canny and SAM edges share one repo
    for repo in hub["tokenizers"]:
        snapshot = Path(snapshot_download(repo, cache_dir=cache, local_files_only=True))
        assert json.loads((snapshot / "config.json").read_text())["enc_type"]


# ---------------------------------------------------------------------------------------------- the command


def test_cli_generates_every_target_from_a_hub_id(
    offline: Path, vocab: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["generate", "--model", MODEL, "--tokenizers", "official", "--vocab", str(vocab)]
    argv += ["--input", f"rgb={photo}", "--targets", TARGETS, "--out", str(out), "--threads", "1", "--steps", "4"]
    rc = main(argv)
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    record = json.loads((out / "outputs.json").read_text())
    targets = record["targets"]
    assert list(targets) == TARGETS.split(",")
    assert set(record["seconds"]) == set(targets)
    from PIL import Image

    for name, entry in targets.items():
        files = [p for p in out.iterdir() if p.stem == name]
        assert len(files) == 1, f"{name}: {files}"
        if entry["kind"] == "image_tokens":  # a decoded map, drawn
            picture = np.asarray(Image.open(files[0]))
            assert files[0].suffix == ".png" and picture.ndim == 3 and picture.shape[-1] == 3
            assert len(entry["ids"]) == 196
        elif entry["kind"] == "sequence":  # drawn by its plugin when it parses, else its text and why not
            if entry.get("parse_error") is None:
                assert files[0].suffix == ".png"
            else:
                assert files[0].suffix == ".json" and json.loads(files[0].read_text())["parse_error"]
                assert f"{name}" in printed.out
        else:  # the DINOv2-global embedding: 16 tokens decoded to a 768-d vector
            assert len(entry["ids"]) == 16 and len(json.loads(files[0].read_text())["value"]) == 768
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[1] >= 4 * 128  # the input and the three maps side by side, texts below
    # random weights, yet every sequence target parses: decoding is held to each serializer's grammar, built in the
    # official WordPiece vocabulary
    sequences = [e for e in targets.values() if e["kind"] == "sequence"]
    assert sequences and all(e.get("parse_error") is None for e in sequences)
    assert "loaded in" in printed.out and "unparsed" not in printed.out


def test_uncached_tokenizer_offline_is_one_line_before_compute(
    hub: dict[str, Any],
    vocab: Path,
    photo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The model is cached, the depth tokenizer's repo is not: one line naming that repo, exit code 2, nothing run."""
    cache = tmp_path / "hub"
    cache.mkdir()
    name = f"models--{MODEL.replace('/', '--')}"
    (cache / name).symlink_to(hub["cache"] / name, target_is_directory=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    monkeypatch.delenv("FOURM_DEBUG", raising=False)
    official_resolve.clear_cache()

    def no_compute(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sampler ran before the missing tokenizer was reported")

    monkeypatch.setattr("fourm_core.inference.sampler.GenerationSampler.generate", no_compute)
    out = tmp_path / "out"
    argv = ["generate", "--model", MODEL, "--tokenizers", "official", "--vocab", str(vocab)]
    argv += ["--input", f"rgb={photo}", "--targets", "caption,depth", "--out", str(out)]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), errors
    repo = "EPFL-VILAB/4M_tokenizers_depth_8k_224-448"
    assert repo in errors[0] and f"hf download {repo}" in errors[0] and "HF_HUB_OFFLINE" in errors[0]
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- notebook recipes


@pytest.fixture
def model(offline: Path, vocab: Path, registry: Any) -> Any:
    import fourm_core as fm

    return fm.FourM.from_pretrained(MODEL, tokenizers="official", vocabulary=vocab, registry=registry)


def _drawn(out: Any) -> dict[str, str]:
    """How each output shows: a picture, a vector, or text (with the reason it did not parse)."""
    shown = {}
    for name, output in out.items():
        if output.picture() is not None:
            shown[name] = "picture"
        elif output.text is not None:
            assert output.parse_error is not None, f"{name}: parsed but not drawn"
            shown[name] = "unparsed text"
        else:
            shown[name] = "vector"
    return shown


def test_caption_to_everything_chained(model: Any) -> None:
    """ml-4m's caption -> everything: each target sees the caption and every target generated before it."""
    out = model.generate({"caption": "a woman in an orange space suit"}, targets=EVERYTHING[1:], steps=2, seed=0)
    shown = _drawn(out)
    assert list(out) == EVERYTHING[1:]
    pictures = {"tok_rgb", "depth", "normal", "semseg", "clip", "dinov2", "imagebind", "canny_edge", "sam_edge"}
    assert {k for k, v in shown.items() if v == "picture"} >= pictures
    assert shown["dinov2_global"] == shown["imagebind_global"] == "vector"
    rgb = out["tok_rgb"].picture()
    assert rgb.shape == (224, 224, 3) and rgb.std() > 0  # the DiVAE decoded a picture, not a constant
    assert out["dinov2_global"].array.shape == (768,) and out["imagebind_global"].array.shape == (1280,)


def test_rgb_to_everything(model: Any, photo: Path) -> None:
    from PIL import Image

    picture = np.asarray(Image.open(photo).convert("RGB"))
    targets = [t for t in EVERYTHING if t != "tok_rgb"]
    out = model.generate({"rgb": picture}, targets=targets, steps=2, seed=1)
    assert list(out) == targets and set(_drawn(out)) == set(targets)
    assert out.grid_image().size[0] > 0
    encoded = model.encode({"rgb": picture})  # the FMViT use: the encoder as a backbone
    assert tuple(encoded.tokens.shape) == (1, 196, 16) and tuple(encoded.pooled.shape) == (1, 16)


def test_fine_grained_steering_with_metadata_boxes_and_guidance(model: Any, registry: Any) -> None:
    """ml-4m's steering recipe: a caption, boxes and metadata as inputs, classifier-free guidance on the first step
    and composable multi-condition guidance (caption, boxes, metadata) on the RGB tokens."""
    box = type(registry.serializer("det").example(random.Random(0))[0])
    inputs = {
        "caption": "a person on a beach",
        "det": [box(xmin=0.1, ymin=0.2, xmax=0.6, ymax=0.9, label="person", score=1.0)],
        "metadata_semantic": {"walkability": 0.9, "n_humans": 1.0},
        "metadata_image": {"brightness": 200.0},
    }
    schedule = [
        {"target": "tok_dinov2_global", "scheme": "maskgit", "num_steps": 2, "temperature": 0.5, "cfg_scale": 3.0},
        {
            "target": "tok_rgb@224",
            "scheme": "roar",
            "num_steps": 2,
            "temperature": 0.5,
            "cfg_weights": {"caption": 3.0, "det": 1.0, "metadata": 1.0},
        },
    ]
    first = model.generate(inputs, targets=["dinov2_global", "tok_rgb"], schedule=schedule, seed=3)
    again = model.generate(inputs, targets=["dinov2_global", "tok_rgb"], schedule=schedule, seed=3)
    assert _drawn(first) == {"dinov2_global": "vector", "tok_rgb": "picture"}
    assert torch.equal(first["tok_rgb"].ids, again["tok_rgb"].ids)  # a seed fixes the guided generation
    np.testing.assert_array_equal(first["tok_rgb"].picture(), again["tok_rgb"].picture())
    assert set(first.inputs.texts) >= {"caption", "det"}
