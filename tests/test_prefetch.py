"""Micro-batches built ahead of the step in loader workers, ``torch.compile`` and activation checkpointing: each
trains the same run as the plain synchronous path (bit-equal, or within a stated tolerance where the arithmetic is
reordered), and a mistake in a worker still ends in the user's one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from fourm_core.apps.cli.errors import user_error_message
from fourm_core.apps.cli.train import parse_overrides
from fourm_core.data.loader import StoreDataset
from fourm_core.registry import Registry
from fourm_core.training.config import ConfigError, RunConfig, load_run_config, validate_config
from fourm_core.training.data import TrainingData
from fourm_core.training.engine import config_fingerprint, train
from fourm_core.training.prefetch import StepBatches, _portable
from fourm_core.vocab import TextVocabulary
from helpers import small_world

MODEL = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """24 labelled scenes (pixels, raw sequences), depth pre-tokenised with 2 crops: every kind of read a batch does."""
    root = tmp_path_factory.mktemp("prefetch")
    return small_world(root, registry, ["rgb", "depth", "caption", "det"], ["depth"], steps=1, crops=2, scenes=24)


def config_data(world: dict[str, Path], out: Path, **engine: Any) -> dict[str, Any]:
    return {
        "out_dir": str(out),
        "vocabulary": str(world["vocab"]),
        "datasets": [{"name": "world", "store": str(world["store"]), "val_samples": 4}],
        "input_tokens": 32,
        "target_tokens": 32,
        "model": {"size": "tiny", "preset": "tiny", "overrides": dict(MODEL)},
        "optim": {"lr": 3e-3},
        "schedule": {"steps": 4, "warmup_steps": 1},
        "engine": {"micro_batch_size": 4, "grad_accum": 2, "threads": 1, "peak_gflops": 10.0, **engine},
        "log_every": 1,
    }


def run_config(world: dict[str, Path], out: Path, **engine: Any) -> RunConfig:
    return RunConfig.model_validate(config_data(world, out, **engine))


def train_losses(path: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "train"]


def assert_same_batch(a: Any, b: Any) -> None:
    assert a.position == b.position and (a.tokens_in, a.tokens_tgt) == (b.tokens_in, b.tokens_tgt)
    assert a.batch.mod_dict.keys() == b.batch.mod_dict.keys()
    for key, fields in a.batch.mod_dict.items():
        for name, tensor in fields.items():
            assert torch.equal(tensor, b.batch.mod_dict[key][name]), (a.position, key, name)


def test_workers_train_the_same_run_bit_for_bit(world: dict[str, Path], registry: Registry, tmp_path: Path) -> None:
    plain = train(run_config(world, tmp_path / "sync"), registry)
    ahead = train(run_config(world, tmp_path / "workers", loader_workers=2, prefetch=1), registry)
    assert train_losses(ahead.log_path) == train_losses(plain.log_path)
    a, b = load_file(str(plain.final_dir / "model.safetensors")), load_file(str(ahead.final_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_batches_from_a_resumed_step_on_another_rank(world: dict[str, Path], registry: Registry) -> None:
    """Rank 1 of 2, resumed at step 2: workers deliver exactly the synchronous path's micro-batches, in order,
    from a process that had already read the store (its handles must not be reused in the workers)."""
    sync_config = run_config(world, Path("unused"))
    data = TrainingData(sync_config, registry, TextVocabulary.load(world["vocab"]))
    cpu = torch.device("cpu")
    sync = list(StepBatches(data, sync_config, 0, 5, rank=1, world=2, device=cpu, dtype=torch.float32))
    assert any(s.dataset._store is not None for s in data.sources if isinstance(s.dataset, StoreDataset))
    workers = run_config(world, Path("unused"), loader_workers=2)
    ahead = StepBatches(data, workers, 2, 5, rank=1, world=2, device=cpu, dtype=torch.float32)
    assert ahead._loader is not None and len(ahead) == 6
    resumed = list(ahead)
    assert len(resumed) == 6 and [b.position for b in resumed] == [b.position for b in sync[4:]]
    for a, b in zip(resumed, sync[4:], strict=True):
        assert_same_batch(a, b)


def test_forget_handles_reopens_the_store(world: dict[str, Path], registry: Registry) -> None:
    data = TrainingData(run_config(world, Path("unused")), registry, TextVocabulary.load(world["vocab"]))
    before = data.batch(3, 4)
    (store,) = [s.dataset for s in data.sources]
    assert store._store is not None and store._cache
    data.forget_handles()
    assert store._store is None and not store._cache
    after = data.batch(3, 4)
    for key, fields in before.mod_dict.items():
        for name, tensor in fields.items():
            assert torch.equal(tensor, after.mod_dict[key][name])


def test_a_mistake_found_in_a_worker_is_one_line(world: dict[str, Path], registry: Registry, tmp_path: Path) -> None:
    config = RunConfig.model_validate({**config_data(world, tmp_path / "run", loader_workers=1), "crop": 5})
    with pytest.raises(ValueError, match="crop 5 does not exist") as caught:
        train(config, registry)
    message = user_error_message(caught.value)
    assert message == str(caught.value) and "\n" not in message and "DataLoader" not in message
    cause = caught.value.__cause__  # the worker's traceback, for a traceback (fourm --debug) to show
    assert "in loader worker, micro-batch at sample position 0" in str(cause) and "locate" in str(cause)


def test_a_library_error_in_a_worker_stays_a_bug(world: dict[str, Path]) -> None:
    """A ValueError from numpy inside a worker would read as fourm's deliberate one once re-raised from fourm code:
    it travels as a RuntimeError (a traceback and "please report"), while fourm's own stays a ValueError."""
    try:
        np.zeros(2).reshape(3)
    except ValueError as exc:
        library = _portable(exc, "a test")
    assert type(library) is RuntimeError and str(library).startswith("ValueError in a test:")
    assert user_error_message(library) is None
    try:
        StoreDataset(world["store"], ["caption"], crop="bogus")
    except ValueError as exc:
        own, original = _portable(exc, "a test"), exc
    assert own is original  # re-raised from fourm code (StepBatches), it is the user's one line


def test_speed_settings_keep_the_fingerprint(world: dict[str, Path]) -> None:
    """A run may be resumed with more loader workers or compiled: they change no batch and no weight."""
    plain = run_config(world, Path("unused"))
    fast = run_config(world, Path("unused"), loader_workers=3, prefetch=4, compile=True, compile_backend="aot_eager")
    assert config_fingerprint(fast) == config_fingerprint(plain)


def test_compile_with_zero3_is_refused_in_one_line(world: dict[str, Path]) -> None:
    data = config_data(world, Path("unused"), compile=True, zero_stage=3)
    with pytest.raises(ConfigError, match=r"^run.yaml: engine: compile works with zero_stage 0, 1 or 2, not 3") as e:
        validate_config(RunConfig, data, "run.yaml")
    assert "\n" not in str(e.value)


def test_compiled_training_matches_eager(world: dict[str, Path], registry: Registry, tmp_path: Path) -> None:
    """``aot_eager`` traces forward and backward into graphs of the same ATen kernels (no code generation, cheap on a
    CPU): its decompositions may reorder float32 sums, so losses agree to rounding (measured: about 2e-7 relative
    after 4-6 steps), not bit for bit. 1e-5 is far below what a wrong gradient or a missed parameter update does to the
    loss at lr 3e-3 (above 1e-3 per step here)."""
    short = {"grad_accum": 1, "zero_stage": 2}  # fewer batch shapes to compile; ZeRO 2 as the GPU configs use
    eager = train_losses(train(run_config(world, tmp_path / "eager", **short), registry).log_path)
    graphs = counters["stats"]["unique_graphs"]
    compiled = train(
        run_config(world, tmp_path / "compiled", compile=True, compile_backend="aot_eager", **short), registry
    )
    assert counters["stats"]["unique_graphs"] > graphs  # the steps did run through compiled graphs
    assert compiled.final_dir is not None and (compiled.final_dir / "model.safetensors").is_file()
    assert train_losses(compiled.log_path) == pytest.approx(eager, rel=1e-5)
    assert eager[-1] < eager[0] - 1e-3  # the tolerance is well below what a step changes


def test_activation_checkpointing_from_the_command_line(
    world: dict[str, Path], registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--set model.overrides.use_act_checkpoint=true`` (ml-4m's switch) recomputes each block in backward: same
    losses and weights as storing the activations, with drop path on (its masks are replayed, not drawn anew)."""
    data = config_data(world, tmp_path / "plain")
    data["model"]["overrides"]["drop_path_rate_encoder"] = 0.2
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    plain = load_run_config(path)
    checkpointed = load_run_config(
        path, **parse_overrides(["model.overrides.use_act_checkpoint=true", f"out_dir={tmp_path / 'ckpt'}"])
    )
    assert checkpointed.model.overrides["use_act_checkpoint"] is True
    a = train(plain, registry)
    calls = []
    recompute = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or recompute(*a, **k))
    b = train(checkpointed, registry)
    assert len(calls) == 4 * 2 * 2  # steps x micro-batches x (1 encoder + 1 decoder block): it did recompute
    assert train_losses(b.log_path) == pytest.approx(train_losses(a.log_path), rel=1e-6, abs=0)
    wa, wb = load_file(str(a.final_dir / "model.safetensors")), load_file(str(b.final_dir / "model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6) for k in wa)
