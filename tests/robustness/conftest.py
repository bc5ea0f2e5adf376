"""Shared helpers of the robustness suite: run ``fourm`` as a user would (a real subprocess) and check that a user
mistake ended the way the project promises: exit code 2, no traceback, one line naming the bad thing.

A subprocess, not ``main()`` in-process, because what is asserted is what a user sees: the exit status of the
interpreter, everything written to stderr (DeepSpeed's and warnings' lines included) and no side effect of an
earlier test's imports or monkeypatches.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import EXAMPLE_PLUGIN

#: a CLI run that takes longer than this is a hang, which is itself a failure
CLI_TIMEOUT_S = 300

#: stderr lines that are other libraries' chatter, not the CLI's message: DeepSpeed / torch logging records
#: ("[2025-01-01 12:00:00,000] [INFO] ...", torch's C++ "[rank0]:W1207 03:54:06.143000 9042 file:183] ..."), the
#: linker probes of DeepSpeed's op builder ("/usr/bin/ld: cannot find -laio", "collect2: error: ..."), Python
#: warnings (the file:line header and its source line)
NOISE = (
    re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,.]+\]"),
    re.compile(r"^\[(INFO|WARNING|DEBUG)\b"),
    re.compile(r"^(\[rank\d+\]:)?[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]"),
    re.compile(r"^(\S*/)?ld(\.\w+)?: |^collect2: "),
    re.compile(r"^\S+\.py:\d+: \w*Warning\b"),
    re.compile(r"^\s{2,}\S"),  # the indented source line python's warnings module prints under its header
)

#: what an in-process ``train`` (``init_distributed``) sets and a subprocess must not inherit
DISTRIBUTED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: this one's, strict plugins, the example plugin blocked (as the rest
    of the suite), one thread; ``env`` entries override (a value of ``""`` is kept, to test empty settings)."""
    merged = dict(os.environ)
    merged.update(
        {
            "FOURM_STRICT_PLUGINS": "1",
            "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN,
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    merged.pop("FOURM_DEBUG", None)  # a traceback must be what the CLI chose, not what the caller's shell asked
    for name in DISTRIBUTED:  # an in-process training run of this test session leaves its world behind
        merged.pop(name, None)
    merged.update(env or {})
    return merged


def run_cli_process(
    args: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = CLI_TIMEOUT_S,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m fourm_core.apps.cli.main *args`` in a subprocess (see :func:`cli_env`); never raises on a
    non-zero exit, the caller asserts on ``returncode`` / ``stdout`` / ``stderr``."""
    command = [sys.executable, "-m", "fourm_core.apps.cli.main", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, env=cli_env(env), cwd=cwd, timeout=timeout, input=input
    )


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """``run_cli(["data", "verify", str(store)], env={"X": "1"}, cwd=..., timeout=...) -> CompletedProcess``.

    Runs in ``tmp_path`` unless ``cwd`` is given, so relative outputs of a command land in the test's folder."""

    def run(
        args: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None, **options: Any
    ) -> subprocess.CompletedProcess[str]:
        options.setdefault("cwd", tmp_path)
        return run_cli_process(args, env, **options)

    return run


def message_lines(stderr: str) -> list[str]:
    """The non-empty stderr lines that are not other libraries' logging or warnings (:data:`NOISE`)."""
    return [line for line in stderr.splitlines() if line.strip() and not any(p.search(line) for p in NOISE)]


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert ``result`` is how a user mistake must end: exit code 2, no traceback, exactly one line of message on
    stderr (library logging aside), containing each of ``words`` (case-sensitive, e.g. the bad file's name).
    Returns that line."""
    report = f"exit {result.returncode}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, report
    assert result.returncode == 2, report
    lines = message_lines(result.stderr)
    assert len(lines) == 1, f"expected one line of message, got {len(lines)}:\n{report}"
    missing = [w for w in words if w not in lines[0]]
    assert not missing, f"message does not name {missing}: {lines[0]!r}\n{report}"
    return lines[0]


@pytest.fixture
def user_error() -> Callable[..., str]:
    """:func:`assert_user_error` as a fixture, for test files that prefer not to import from a conftest
    (``from robustness.conftest import assert_user_error`` works too: ``tests`` is on the path)."""
    return assert_user_error


# -- hostile files ------------------------------------------------------------------------------------------------
#: the file of DeepSpeed's checkpoint that holds the model (and, without ZeRO, the optimizer)
MODEL_STATES = "mp_rank_00_model_states.pt"


class _Plant:
    """Unpickling this runs ``exec``: it writes ``marker`` (what a hostile checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def plant(path: Path, marker: Path) -> None:
    """A real ``torch.save`` zip file whose pickle runs code on a ``weights_only=False`` load."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"module": _Plant(marker), "client_state": {"step": 4}}, path)


# -- a trained run folder ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainedRun:
    """A run folder of a real 4-step training (checkpoints of steps 2 and 4, ``latest`` = step 4) and the config
    that made it; ``copy(dest)`` gives a private copy to damage, with its own config pointing at it."""

    out: Path
    config: dict[str, Any]

    def copy(self, dest: Path) -> tuple[Path, Path]:
        """(config file, run folder) of a copy of this run under ``dest``."""
        out = dest / "run"
        shutil.copytree(self.out, out, symlinks=True)
        path = dest / "run.yaml"
        path.write_text(yaml.safe_dump({**self.config, "out_dir": str(out)}))
        return path, out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One small real training for the whole session (about 10 s): a 16-scene synthetic store labelled with two
    sequence modalities, a dim-32 model, 4 steps, a checkpoint every 2."""
    from fourm_core.registry import Registry
    from fourm_core.training.config import RunConfig
    from fourm_core.training.engine import train
    from helpers import small_world

    root = tmp_path_factory.mktemp("trained_run")
    registry = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    world = small_world(root, registry, ["caption", "det"], scenes=16)
    config: dict[str, Any] = {
        "vocabulary": str(world["vocab"]),
        "datasets": [{"name": "world", "store": str(world["store"]), "val_samples": 4}],
        "input_tokens": 32,
        "target_tokens": 32,
        "model": {
            "size": "tiny",
            "preset": "tiny",
            "overrides": {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2},
        },
        "optim": {"lr": 3e-3},
        "schedule": {"steps": 4, "warmup_steps": 1},
        "engine": {"micro_batch_size": 4, "threads": 1, "peak_gflops": 10.0},
        "log_every": 1,
        "checkpoint_every": 2,
    }
    out = root / "run"
    train(RunConfig.model_validate({**config, "out_dir": str(out)}), registry)
    return TrainedRun(out, config)
