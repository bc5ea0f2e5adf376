"""``--device`` / ``--dtype`` of tokenizer training and pre-tokenisation (fourm_core.devices) on a small store:
``auto`` resolves to what is there, ``cuda`` without a GPU is one line before anything is loaded, the CPU in fp32
is what the commands did before they had a device, bf16 trains and is recorded, and bf16 tokens never mix with
fp32 ones in one part while the device is free to change."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.apps.cli.main import main
from fourm_core.devices import DeviceError, Placement
from fourm_core.labeling.runner import label_store
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
from fourm_core.tokenizers.pretokenize import _weights_hash, tokenize_store
from fourm_core.tokenizers.training import collect, fit
from helpers import RANDOM_TEACHERS

SAMPLES = 24
SMALL = {"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "diffusion": None}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    path = tmp_path_factory.mktemp("devices") / "w.zarr"
    source = SyntheticSource(SAMPLES, 64, 3)
    write_source(create_source_store(path, source, 64, "tiny", 16), source)
    label_store(path, registry=registry, only=["depth"], options=RANDOM_TEACHERS)
    return path


def small_depth(registry: Registry) -> Tokenizer:
    torch.manual_seed(0)  # the same initial weights every time
    return Tokenizer(config_from_spec(registry.get("depth").spec, "tiny").model_copy(update=SMALL))


@pytest.fixture(scope="module")
def toks(tmp_path_factory: pytest.TempPathFactory, registry: Registry, store_path: Path) -> Path:
    """A small depth tokenizer, fitted for a few steps on the CPU."""
    tok = small_depth(registry)
    fit(tok, collect(AlignedStore.open(store_path, mode="r"), tok.config, registry, 0.2).train, _cfg())
    root = tmp_path_factory.mktemp("toks")
    tok.save_pretrained(root / tok.name)
    return root


def _cfg() -> TrainConfig:
    return TrainConfig(steps=4, max_seconds=None, batch_size=8)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees no CUDA GPU, whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_auto_takes_what_is_there_and_checks_its_choices(monkeypatch: pytest.MonkeyPatch, no_gpu: None) -> None:
    place = Placement.resolve("auto", "fp32")
    assert (place.device, place.dtype, place.requested) == ("cpu", "fp32", "auto")
    assert place.record() == {"device": "cpu", "device_choice": "auto", "dtype": "fp32"}
    assert Placement.resolve("cpu", "bf16").torch_dtype == torch.bfloat16
    with pytest.raises(DeviceError, match=r"--dtype: expected one of fp32, bf16, got 'fp16'"):
        Placement.resolve("cpu", "fp16")  # tokenizers train in fp32 or bf16 only (fp16 would need loss scaling)
    with pytest.raises(DeviceError, match="expected one of auto, cpu, cuda, got 'tpu'"):
        Placement.resolve("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Placement.resolve("auto").device == "cuda" and Placement.resolve("cpu").device == "cpu"


@pytest.mark.parametrize("command", ["train", "tokenize"])
def test_cuda_without_a_gpu_is_one_line_before_anything_loads(
    command: str, no_gpu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "no-such-store.zarr")  # never opened: the device is checked first
    if command == "train":
        argv = ["tokenizer", "train", "depth", "--store", missing, "--device", "cuda"]
    else:
        argv = ["data", "tokenize", missing, "--tokenizers", str(tmp_path), "--device", "cuda"]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("error: --device: cuda asked for, but no CUDA GPU is visible") and "no-such" not in line
    with pytest.raises(DeviceError):
        tokenize_store(missing, tmp_path, Registry(), device="cuda")


def test_the_cpu_in_fp32_is_what_the_commands_did_before(
    registry: Registry, store_path: Path, toks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = collect(AlignedStore.open(store_path, mode="r"), small_depth(registry).config, registry, 0.2)
    default, explicit = small_depth(registry), small_depth(registry)
    record = fit(default, split.train, _cfg())
    fit(explicit, split.train, _cfg(), placement=Placement.resolve("cpu", "fp32"))
    for name, value in default.state_dict().items():
        assert torch.equal(value, explicit.state_dict()[name]), name
    assert record["device"] == "cpu" and record["dtype"] == "fp32"

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store_path, copy)
    assert main(["data", "tokenize", str(copy), "--tokenizers", str(toks), "--only", "depth"]) == 0  # no flag
    assert "device: cpu" in capsys.readouterr().out
    out = AlignedStore.open(copy, mode="r")
    provenance = out.root.attrs["parts"]["depth/tokens"]["provenance"]
    # the hash of the time before precisions: parts written then resume; the device is in no hash
    assert provenance["config_hash"] == f"{_weights_hash(toks / 'depth')}-crops=1-seed=0"
    assert provenance["dtype"] == "fp32" and "device" not in provenance
    reference = Tokenizer.from_pretrained(toks / "depth")
    raws = [out.read("depth/raw", i)["depth"] for i in range(SAMPLES)]
    written = np.stack([out.read("depth/tokens", i)["tokens"][0] for i in range(SAMPLES)])
    np.testing.assert_array_equal(written, reference.encode_raw(raws).numpy())
    again = tokenize_store(copy, toks, registry, only=["depth"], device="auto", dtype="fp32")
    assert again[0].note == "already tokenised"  # another device choice, the same part


def test_bf16_training_runs_in_bf16_and_says_so(
    registry: Registry, store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "toks"
    argv = ["tokenizer", "train", "depth", "--store", str(store_path), "--out", str(out), "--steps", "3"]
    assert main([*argv, "--dtype", "bf16", "--device", "cpu"]) == 0
    assert "dtype bf16" in capsys.readouterr().out
    training = json.loads((out / "depth" / "report.json").read_text())["training"]
    assert (training["device"], training["device_choice"], training["dtype"]) == ("cpu", "cpu", "bf16")
    assert training["steps"] == 3 and all(math.isfinite(v) for v in training["final_losses"].values())
    saved = Tokenizer.from_pretrained(out / "depth")
    assert saved.info["dtype"] == "bf16" and saved.device().type == "cpu"
    assert all(v.dtype != torch.bfloat16 for v in saved.state_dict().values())  # fp32 master weights
    # autocast really ran: the same start and batches give other weights than fp32
    split = collect(AlignedStore.open(store_path, mode="r"), small_depth(registry).config, registry, 0.2)
    fp32, bf16 = small_depth(registry), small_depth(registry)
    fit(fp32, split.train, _cfg())
    fit(bf16, split.train, _cfg(), placement=Placement.resolve("cpu", "bf16"))
    assert not torch.equal(fp32.state_dict()["network.patch.weight"], bf16.state_dict()["network.patch.weight"])


def test_bf16_tokens_are_recorded_and_never_mixed_with_fp32(
    registry: Registry, store_path: Path, toks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store_path, copy)
    assert main(["data", "tokenize", str(copy), "--tokenizers", str(toks), "--only", "depth", "--dtype", "bf16"]) == 0
    capsys.readouterr()
    out = AlignedStore.open(copy, mode="r")
    provenance = out.root.attrs["parts"]["depth/tokens"]["provenance"]
    assert provenance["dtype"] == "bf16" and provenance["config_hash"].endswith("-dtype=bf16")
    tokens = [out.read("depth/tokens", i)["tokens"] for i in range(SAMPLES)]
    assert all(t.shape == (1, 64) and 0 <= t.min() and t.max() < 512 for t in tokens)
    assert main(["data", "tokenize", str(copy), "--tokenizers", str(toks), "--only", "depth"]) == 2
    line = _error_line(capsys)
    assert "part 'depth/tokens' was written by another configuration" in line and "refusing to mix" in line
    resumed = tokenize_store(copy, toks, registry, only=["depth"], device="cpu", dtype="bf16")
    assert resumed[0].note == "already tokenised"
