"""The training device (``--device cuda|cpu|auto``), the MFU's peak per accelerator, the per-GPU memory estimate and
the 4M-21 B / L / XL train configs, all without a GPU (the GPU's name and presence are monkeypatched)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fourm_core.apps.cli.main import main
from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.training.config import RunConfig, load_run_config
from fourm_core.training.device import DeviceError, accelerator_peak, datasheet_peak, resolve_device
from fourm_core.training.engine import config_fingerprint, schedule_steps, train
from fourm_core.training.memory import ModelShape, estimate_memory
from helpers import small_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# -- the device ----------------------------------------------------------------------------------------------------
def test_auto_takes_the_gpu_only_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda" and resolve_device("cpu") == "cpu"


def test_a_process_binds_its_local_rank_or_its_one_isolated_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from fourm_core.training.device import local_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert [local_gpu(r, 4) for r in range(4)] == [0, 1, 2, 3]
    with pytest.raises(DeviceError, match="LOCAL_RANK 4: this machine has 4 CUDA GPUs"):
        local_gpu(4, 4)  # more processes than GPUs: refused, never two on one GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # srun --gpus-per-task=1: each task sees its own one
    assert local_gpu(3, 1) == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(DeviceError):
        local_gpu(1, 1)


def test_cuda_without_a_gpu_is_one_line(no_gpu: None) -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda", "--device")
    message = str(info.value)
    assert "\n" not in message and message.startswith("--device: cuda") and "no CUDA GPU" in message
    with pytest.raises(DeviceError, match="expected one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_fourm_train_device_cuda_fails_at_start(no_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs/train/tiny-cpu.yaml")
    assert main(["train", "--config", config, "--device", "cuda"]) == 2
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert "--device: cuda asked for, but no CUDA GPU" in text and "Traceback" not in text
    # the config's engine.device too, naming the file (a GPU config on a CPU machine)
    assert main(["train", "--config", str(REPO / "configs/train/4m21-b.yaml")]) == 2
    out = capsys.readouterr()
    assert "4m21-b.yaml: cuda asked for" in " ".join((out.out + out.err).split())


def test_the_device_does_not_change_the_fingerprint() -> None:
    base = load_run_config(REPO / "configs/train/tiny-cpu.yaml")
    other = load_run_config(REPO / "configs/train/tiny-cpu.yaml", **{"engine.device": "cpu"})
    assert base.engine.device == "auto" and config_fingerprint(base) == config_fingerprint(other)


# -- the peak the MFU divides by -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "dtype", "tf32", "tflops", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, False, 989.5, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", torch.float32, False, 67.0, "H100 SXM"),
        ("NVIDIA H100 80GB HBM3", torch.float32, True, 494.5, "H100 SXM"),
        ("NVIDIA H100 PCIe", torch.bfloat16, False, 756.5, "H100 PCIe"),
        ("NVIDIA H100 NVL", torch.bfloat16, False, 835.5, "H100 NVL"),
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, False, 312.0, "A100"),
        ("NVIDIA A100 80GB PCIe", torch.float32, False, 19.5, "A100"),
        ("NVIDIA H200", torch.bfloat16, False, 989.5, "H200 SXM"),
        ("NVIDIA H200 NVL", torch.float32, False, 60.0, "H200 NVL"),
    ],
)
def test_datasheet_lookup(name: str, dtype: torch.dtype, tf32: bool, tflops: float, sku: str) -> None:
    found = datasheet_peak(name, dtype, tf32)
    assert found is not None
    gflops, source = found
    assert gflops == pytest.approx(tflops * 1000) and sku in source and "dense" in source


def test_unknown_gpu_falls_back_to_its_measured_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    assert datasheet_peak("NVIDIA GeForce RTX 4090", torch.bfloat16) is None
    measured: list[torch.dtype] = []

    def measure(dtype: torch.dtype) -> float:
        measured.append(dtype)
        return 123_000.0

    peak = accelerator_peak("cuda", torch.bfloat16, device_name=lambda: "NVIDIA GeForce RTX 4090", measure_gpu=measure)
    assert peak.gflops == 123_000.0 and measured == [torch.bfloat16] and "measured bfloat16" in peak.source
    known = accelerator_peak("cuda", torch.bfloat16, device_name=lambda: "NVIDIA H100 80GB HBM3", measure_gpu=measure)
    assert known.gflops == pytest.approx(989_500.0) and len(measured) == 1  # the table, not a measurement
    # fp32 follows torch's TF32 switch
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    tf32 = accelerator_peak("cuda", torch.float32, device_name=lambda: "NVIDIA A100-SXM4-40GB", measure_gpu=measure)
    assert tf32.gflops == pytest.approx(156_000.0)
    cpu = accelerator_peak("cpu", torch.float32, threads=1, measure_cpu=lambda threads, dtype: 50.0)
    assert cpu.gflops == 50.0 and "CPU" in cpu.source
    assert accelerator_peak("cuda", torch.bfloat16, configured=7.0).gflops == 7.0


# -- the memory estimate -------------------------------------------------------------------------------------------
def test_memory_estimate_by_hand() -> None:
    shape = ModelShape(1000, dim=8, encoder_depth=2, decoder_depth=3, mlp_hidden=10, gated_mlp=True,
                       head_vocabs=(20, 40), num_register_tokens=1)  # fmt: skip
    kw = {"precision": "bf16", "zero_stage": 2, "world": 4, "micro_batch": 2, "input_tokens": 5, "target_tokens": 3}
    est = estimate_memory(shape, act_checkpoint=False, **kw)
    # model states (ZeRO paper): bf16 params 2 B each, grads 2 B / 4 ranks, Adam 12 B / 4 ranks
    assert (est.parameters, est.gradients, est.optimizer) == (2000, 500, 3000)
    # 6 encoder tokens (5 + a register), MLP 4 x 10: encoder block 6 (8*8 + 40) = 624, decoder block
    # 3 (12*8 + 40) + 6 * 3*8 = 552, context 6*8 = 48; (2*624 + 3*552 + 48) * 2 B = 5904; logits 3 x 30 x 10 B = 900
    assert est.activations == 2 * (5904 + 900)
    # checkpointing: block inputs 2*6*8 + 3*3*8 = 168, plus the larger block 624, plus context: (168+624+48)*2 + 900
    assert est.activations_other == 2 * ((168 + 624 + 48) * 2 + 900)
    assert estimate_memory(shape, act_checkpoint=True, **kw).activations == est.activations_other
    assert est.total == 2000 + 500 + 3000 + est.activations
    fp32 = estimate_memory(shape, act_checkpoint=False, **{**kw, "precision": "fp32", "zero_stage": 3})
    assert (fp32.parameters, fp32.gradients, fp32.optimizer) == (1000, 1000, 2000)
    assert "ZeRO-2" in est.line() and "world 4" in est.line() and "\n" not in est.line()


def test_model_shape_reads_a_network() -> None:
    table = KeyTable(
        [
            KeyInfo.make("px", "pixels", 4, image_size=8, patch_size=4, id=1),
            KeyInfo.make("grid", "image_tokens", 4, image_size=8, patch_size=4, vocab_size=32, id=2),
            KeyInfo.make("seq", "sequence", 6, vocab_size=50, id=3),
        ]
    )
    model = FourMNetwork(fourm_config(table, "tiny", "swiglu_nobias", dim=24, encoder_depth=2, decoder_depth=1))
    shape = ModelShape.of(model)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert (shape.dim, shape.encoder_depth, shape.decoder_depth) == (24, 2, 1)
    assert shape.gated_mlp and shape.mlp_hidden == int(2 * 24 * 4 / 3)
    assert sorted(shape.head_vocabs) == [32, 50]


# -- the 4M-21 configs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "gpus", "micro", "blr", "zero", "ckpt"),
    [("b", 64, 64, 1e-4, 2, False), ("l", 64, 64, 1e-4, 3, True), ("xl", 128, 32, 2e-5, 3, True)],
)
def test_4m21_configs(size: str, gpus: int, micro: int, blr: float, zero: int, ckpt: bool) -> None:
    config = load_run_config(REPO / f"configs/train/4m21-{size}.yaml")
    assert config.model.size == size.upper() and config.model.recipe == "swiglu_nobias"
    assert config.budget("input") == (256, 256) and config.budget("target") == (256, 256)
    e = config.engine
    assert (e.micro_batch_size * e.grad_accum * gpus, e.precision, e.zero_stage, e.device) == (
        4096,
        "bf16",
        zero,
        "cuda",
    )
    assert config.optim.blr == blr and config.optim.min_lr == 0.0
    assert bool(config.model.overrides.get("use_act_checkpoint")) is ckpt
    total, warmup, per_step = schedule_steps(config, gpus)
    assert per_step == 512 * 4096 and total == 238_419 and warmup == 4_769  # 500B and 10B tokens


# -- a run says it all at start ------------------------------------------------------------------------------------
def test_a_run_announces_device_memory_and_peak(tmp_path: Path, no_gpu: None, registry: Registry) -> None:
    world = small_world(tmp_path, registry, ["caption"], [], scenes=12)
    config = RunConfig.model_validate(
        {
            "out_dir": str(tmp_path / "run"),
            "vocabulary": str(world["vocab"]),
            "datasets": [{"name": "world", "store": str(world["store"]), "modalities": ["caption"]}],
            "input_tokens": 16,
            "target_tokens": 16,
            "model": {"size": "tiny", "preset": "tiny", "overrides": {"dim": 32, "encoder_depth": 1,
                                                                     "decoder_depth": 1, "num_heads": 2}},
            "optim": {"lr": 1e-3},
            "schedule": {"steps": 2},
            "engine": {"micro_batch_size": 2, "threads": 1, "device": "auto"},
        }
    )  # fmt: skip
    lines: list[str] = []
    result = train(config, registry, announce=lines.append)
    assert result.steps == 2
    assert lines[0].startswith("device: cpu") and "chosen by auto" in lines[0] and "gloo" in lines[0]
    assert lines[1].startswith("memory per GPU (estimate; world 1, ZeRO-0, fp32)")
    assert lines[2].startswith("MFU peak:") and "measured float32 matmul on the CPU" in lines[2]
    record = json.loads(result.log_path.read_text().splitlines()[-1])
    assert 0 < record["mfu"] < 1
