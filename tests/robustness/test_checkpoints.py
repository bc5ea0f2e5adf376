"""Checkpoints of ``fourm train`` under damage: a damaged latest checkpoint falls back to the one before with a
warning naming it, a resume logs every step once, a checkpoint of another run (or none usable) is one error line
that leaves the run folder as it was, and a link inside a checkpoint is never followed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from robustness.conftest import MODEL_STATES, RunCli, TrainedRun, assert_user_error, plant

from fourm_core.registry import Registry
from fourm_core.training.checkpoints import MANIFEST, CheckpointError, CheckpointWarning, SafeLoads
from fourm_core.training.config import RunConfig, load_run_config
from fourm_core.training.engine import LOG_NAME, TrainResult, train

STEP2, STEP4 = "step00000002", "step00000004"


def _resume(config: Path, registry: Registry) -> tuple[TrainResult, list[str]]:
    """Resume the run of ``config`` in this process: its result and the checkpoint warnings it gave."""
    return _resume_config(load_run_config(config), registry)


def _resume_config(config: RunConfig, registry: Registry) -> tuple[TrainResult, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config, registry)
    return result, [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]


def _steps(out: Path, kind: str = "train") -> list[int]:
    return [r["step"] for r in map(json.loads, (out / LOG_NAME).read_text().splitlines()) if r["kind"] == kind]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated file": lambda tag: _truncate(tag / MODEL_STATES),
    "save never finished": lambda tag: (tag / MANIFEST).unlink(),
    "file deleted": lambda tag: (tag / MODEL_STATES).unlink(),
    "manifest overwritten": lambda tag: (tag / MANIFEST).write_text("{not json"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(
    damage: str, trained_run: TrainedRun, registry: Registry, tmp_path: Path
) -> None:
    config, out = trained_run.copy(tmp_path)
    DAMAGE[damage](out / "checkpoints" / STEP4)
    result, warned = _resume(config, registry)
    assert result.resumed_from == 2 and result.steps == 4
    assert len(warned) == 1 and STEP4 in warned[0] and STEP2 in warned[0] and "\n" not in warned[0], warned
    assert _steps(out) == [1, 2, 3, 4]


def test_a_resume_logs_each_step_once(trained_run: TrainedRun, registry: Registry, tmp_path: Path) -> None:
    """Killed after logging steps 3 and 4 (and half a line) but before the checkpoint of step 4 was written."""
    config, out = trained_run.copy(tmp_path)
    (out / "checkpoints" / "latest").write_text(STEP2)
    for leftover in (out / "checkpoints" / STEP4, out / "final"):
        __import__("shutil").rmtree(leftover)
    with (out / LOG_NAME).open("a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # torn by the kill
    result, warned = _resume(config, registry)
    assert result.resumed_from == 2 and not warned
    assert _steps(out) == [1, 2, 3, 4]
    assert sorted(set(_steps(out, "val"))) == _steps(out, "val")


def test_a_checkpoint_of_another_run_is_refused_before_anything_is_written(
    trained_run: TrainedRun, run_cli: RunCli, tmp_path: Path
) -> None:
    config, out = trained_run.copy(tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run_cli(["train", "--config", config, "--set", "seed=7"])
    assert_user_error(result, STEP4, "different run")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_no_usable_checkpoint_is_one_error_line(trained_run: TrainedRun, run_cli: RunCli, tmp_path: Path) -> None:
    config, out = trained_run.copy(tmp_path)
    for tag in (STEP2, STEP4):
        _truncate(out / "checkpoints" / tag / MODEL_STATES)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run_cli(["train", "--config", config])
    assert_user_error(result, "no usable checkpoint", STEP4, MODEL_STATES, "--restart")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_link_inside_a_checkpoint_is_not_followed(
    trained_run: TrainedRun, registry: Registry, tmp_path: Path
) -> None:
    config, out = trained_run.copy(tmp_path)
    marker, outside = tmp_path / "pwned", tmp_path / "elsewhere" / MODEL_STATES
    plant(outside, marker)
    (out / "checkpoints" / STEP4 / MODEL_STATES).unlink()
    (out / "checkpoints" / STEP4 / MODEL_STATES).symlink_to(outside)
    with pytest.raises(CheckpointError, match=f"{STEP4}/{MODEL_STATES}: .*link"):
        train(load_run_config(config), registry)
    assert not marker.exists()


def test_the_fallback_warning_is_one_line_in_the_cli(trained_run: TrainedRun, run_cli: RunCli, tmp_path: Path) -> None:
    config, out = trained_run.copy(tmp_path)
    _truncate(out / "checkpoints" / STEP4 / MODEL_STATES)
    result = run_cli(["train", "--config", config])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "CheckpointWarning" in line]
    assert len(lines) == 1 and f"{STEP4}/{MODEL_STATES}" in lines[0] and f"resuming from {out}" in lines[0], lines
    assert "resumed at step 2" in result.stdout


def test_a_zero_bf16_checkpoint_resumes_through_the_safe_loader(
    trained_run: TrainedRun, registry: Registry, tmp_path: Path
) -> None:
    """ZeRO and bf16 optimizer files hold three DeepSpeed objects: the safe loader allows exactly those."""
    data = {**trained_run.config, "out_dir": str(tmp_path / "zero"), "checkpoint_every": None}
    data["engine"] = {**data["engine"], "zero_stage": 1, "precision": "bf16"}
    train(RunConfig.model_validate({**data, "schedule": {"steps": 2, "warmup_steps": 1}}), registry)
    assert any((tmp_path / "zero" / "checkpoints" / STEP2).glob("*optim_states.pt"))
    result, warned = _resume_config(RunConfig.model_validate(data), registry)
    assert result.resumed_from == 2 and result.steps == 4 and not warned


def test_the_safe_loader_refuses_what_the_scan_would_miss(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "x.pt", marker)
    with pytest.raises(CheckpointError, match="x.pt: refusing to load"):
        SafeLoads(object()).load(str(tmp_path / "x.pt"))
    assert not marker.exists()
