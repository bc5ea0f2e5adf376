"""Hub access done the ecosystem's way: a repo id resolves through a Hugging Face cache laid out as the library lays
it out (``models--owner--name/{blobs,refs,snapshots}``), ``HF_HUB_CACHE`` / ``HF_HOME`` / ``HF_HUB_OFFLINE`` and a
``revision`` honoured; offline with nothing cached is one line naming the repo, the cache and how to fetch it, from
the API and from ``fourm generate`` (exit code 2) alike, before anything runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import fourm_core as fm
from fourm_core.hub import HubAssetError, hub_cache_dir, is_repo_id, resolve
from fourm_core.inference.pipeline import ModelAssetsError
from fourm_core.model import FourMNetwork, load_official, official_config
from fourm_core.model.official import read_official_config
from helpers import EXAMPLE_PLUGIN

REPO = "EPFL-VILAB/4M-tiny-test"
MAIN, OTHER = "a" * 40, "b" * 40
#: a small official-layout model (4M-7's keys at width 16): what a hub repo of ml-4m holds, in miniature
CONFIG: dict[str, Any] = {
    "domains_in": ["rgb@224", "tok_rgb@224", "tok_depth@224", "caption"],
    "domains_out": ["tok_rgb@224", "tok_depth@224", "caption"],
    "image_size": 224,
    "patch_size": 16,
    "dim": 16,
    "encoder_depth": 1,
    "decoder_depth": 1,
    "num_heads": 2,
    "mlp_ratio": 4.0,
    "qkv_bias": False,
    "proj_bias": False,
    "mlp_bias": False,
    "norm_bias": False,
    "act_layer": "SiLU",
    "gated_mlp": True,
}


def add_snapshot(cache: Path, repo: str, commit: str, files: dict[str, bytes], refs: tuple[str, ...] = ()) -> Path:
    """One commit of ``repo`` in ``cache`` exactly as ``huggingface_hub`` stores it: content-addressed blobs,
    the snapshot's files as relative symlinks to them, a ref file per branch or tag naming the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snapshot


def model_files(seed: int, config: dict[str, Any] = CONFIG) -> dict[str, bytes]:
    """``config.json`` + ``model.safetensors`` of a randomly initialised official-layout model."""
    torch.manual_seed(seed)
    net = FourMNetwork(official_config(config))
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    from safetensors.torch import save

    return {"config.json": json.dumps(config).encode(), "model.safetensors": save(state)}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline hub cache holding REPO at ``main`` (commit MAIN) and at tag ``v1`` (commit OTHER)."""
    cache = tmp_path / "hf" / "hub"
    for name in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_snapshot(cache, REPO, MAIN, model_files(0), refs=("main",))
    add_snapshot(cache, REPO, OTHER, model_files(1, {**CONFIG, "dim": 8}), refs=("v1",))
    return cache


# ---------------------------------------------------------------------------------------------- resolve


def test_repo_ids_are_told_from_paths() -> None:
    assert is_repo_id("EPFL-VILAB/4M-21_B") and is_repo_id("EPFL-VILAB/4M_tokenizers_rgb_16k_224-448")
    for text in ("runs/tiny/final", "/abs/path", "model.safetensors", "a--b/c", "a/b..c", "owner/", "x" * 97 + "/y"):
        assert not is_repo_id(text), text


def test_local_paths_are_returned_as_they_are(tmp_path: Path) -> None:
    file = tmp_path / "m.safetensors"
    file.write_bytes(b"")
    assert resolve(tmp_path) == tmp_path and resolve(str(file), revision="ignored") == file


def test_repo_id_resolves_from_the_cache_at_a_revision(hub: Path) -> None:
    main = resolve(REPO)
    assert main == hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / MAIN
    assert json.loads((main / "config.json").read_text())["dim"] == 16
    assert resolve(REPO, revision="v1").name == OTHER
    assert resolve(REPO, revision=OTHER).name == OTHER  # a commit hash needs no ref
    assert read_official_config(REPO, revision="v1")["dim"] == 8


def test_hf_home_picks_the_cache(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(hub.parent))
    assert hub_cache_dir() == hub
    assert resolve(REPO).name == MAIN


def test_offline_and_uncached_is_one_line_naming_repo_cache_and_fetch_command(hub: Path) -> None:
    with pytest.raises(HubAssetError) as info:
        resolve("EPFL-VILAB/4M-21_B", revision="v2")
    message = str(info.value)
    assert "\n" not in message
    assert "EPFL-VILAB/4M-21_B" in message and str(hub) in message and "HF_HUB_OFFLINE" in message
    assert "hf download EPFL-VILAB/4M-21_B --revision v2" in message
    with pytest.raises(HubAssetError, match="not a hub repo id"):
        resolve("no/such/folder")


def test_pickles_are_not_fetched(hub: Path) -> None:
    add_snapshot(hub, "owner/pickled", MAIN, {"pytorch_model.bin": b"x", "config.json": b"{}"}, refs=("main",))
    folder = resolve("owner/pickled")
    assert (folder / "config.json").is_file()  # what is cached is returned; only the fetch is filtered
    from fourm_core.hub import DEFAULT_PATTERNS

    assert not any(p.endswith((".bin", ".pth", ".pt")) for p in DEFAULT_PATTERNS)


# ---------------------------------------------------------------------------------------------- the model API


def test_official_model_loads_from_a_hub_id(hub: Path, registry: Any) -> None:
    net = load_official(REPO, registry)
    assert net.config.dim == 16 and not net.training
    assert load_official(REPO, registry, revision="v1").config.dim == 8


def test_fourm_from_pretrained_takes_a_hub_id_and_encodes(hub: Path, registry: Any) -> None:
    model = fm.FourM.from_pretrained(REPO, tokenizers="official", registry=registry)
    assert model.preset == "paper" and model.tokenizers == "official" and model.vocabulary is None
    picture = (np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)
    encoded = model.encode([{"rgb": picture}, {"rgb": picture}])
    assert tuple(encoded.tokens.shape) == (2, 196, 16) and tuple(encoded.pooled.shape) == (2, 16)
    assert bool(encoded.mask.all())
    torch.testing.assert_close(encoded.pooled, encoded.tokens.mean(dim=1))
    with pytest.raises(ModelAssetsError, match="caption.*text_tokenizer_4m_wordpiece_30k.json"):
        model.generate({"rgb": picture}, targets="caption")


def test_official_vocabulary_from_the_environment(hub: Path, registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_OFFICIAL_VOCAB", str(hub / "missing.json"))
    with pytest.raises(ModelAssetsError, match="missing.json"):
        fm.FourM.from_pretrained(REPO, registry=registry)


def test_bare_safetensors_and_hub_layout_folder(hub: Path, tmp_path: Path, registry: Any) -> None:
    files = model_files(0)
    folder = tmp_path / "repo"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert fm.FourM.from_pretrained(folder, registry=registry).network.config.dim == 16
    net = load_official(folder, registry)
    bare = tmp_path / "4M.safetensors"
    state = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(bare), metadata={k: str(v) for k, v in CONFIG.items()})
    model = fm.FourM.from_pretrained(bare, registry=registry)
    torch.testing.assert_close(model.network.state_dict(), net.state_dict())


# ---------------------------------------------------------------------------------------------- the CLI


def test_cli_generate_uncached_offline_exits_2_with_one_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_CACHE": str(tmp_path / "empty"),
            "HF_HUB_OFFLINE": "1",
            "FOURM_STRICT_PLUGINS": "1",
            "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN,
            "OMP_NUM_THREADS": "1",
        }
    )
    env.pop("FOURM_DEBUG", None)
    args = ["generate", "--model", "EPFL-VILAB/4M-21_B", "--tokenizers", "official", "--input", "caption=a dog"]
    args += ["--targets", "depth", "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "fourm_core.apps.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "EPFL-VILAB/4M-21_B" in errors[0] and "hf download EPFL-VILAB/4M-21_B" in errors[0]
    assert not (tmp_path / "out").exists()
