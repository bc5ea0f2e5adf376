"""Training on several machines: ``fourm train --nnodes``, other launchers' environments, node-local checkpoints.

Two "nodes" are two ``fourm train --nnodes 2 --node-rank R`` processes on 127.0.0.1 (gloo), each in its own working
directory with a relative ``out_dir``: the folders differ as node-local disks would. Their training must equal one
node with two processes (the rule of ``test_training.py``'s two-process test: same global batch, equal weights).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_training import clean_env, run_config, weights

from fourm_core.apps.cli.main import main as fourm
from fourm_core.registry import Registry
from fourm_core.training import launch
from fourm_core.training.device import _free_port
from fourm_core.training.engine import train
from fourm_core.training.node_checkpoints import disagreement
from fourm_core.training.rendezvous import DEFAULT_PORT, LaunchPlan, adopt_launcher_environment, slurm_environment
from helpers import EXAMPLE_PLUGIN, small_world

#: what both runs share: the global batch of 2 ranks x micro-batch 2, ZeRO-1 (so each rank writes its own shard)
COMMON = {
    "engine.micro_batch_size": 2,
    "engine.zero_stage": 1,
    "schedule.steps": 3,
    "optim.clip_grad": None,
    "engine.threads": 1,
    "checkpoint_every": 2,
}
STEP = "step{:08d}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    return small_world(tmp_path_factory.mktemp("multinode"), registry, ["rgb", "depth", "caption"], ["depth"], crops=2)


def _config(world: dict[str, Path], out: str, path: Path, **changes: object) -> Path:
    data = run_config(world, Path(out), **{**COMMON, **changes}).model_dump(mode="json")
    data["out_dir"] = out  # as written: a relative one is relative to each process's working directory
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    return {**clean_env(), "FOURM_DISABLE_PLUGINS": EXAMPLE_PLUGIN}


def _train(config: Path, *extra: str, cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "fourm_core.apps.cli.main", "train", "--config", str(config), *extra]
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _two_nodes(config: Path, root: Path, *extra: str) -> list[tuple[int, str]]:
    """Both nodes of a 2 x 1 run started together, node r in ``root/node<r>``: [(exit code, output)] by node."""
    port = str(_free_port())
    procs = []
    for r in (0, 1):
        (root / f"node{r}").mkdir(exist_ok=True)
        flags = ["--nnodes", "2", "--node-rank", str(r), "--master-addr", "127.0.0.1", "--master-port", port]
        procs.append(_train(config, *flags, "--nproc", "1", *extra, cwd=root / f"node{r}"))
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=600)
        out.append((p.returncode, text))
    return out


@pytest.fixture(scope="module")
def one_process_accumulating(
    world: dict[str, Path], registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The reference of ``test_training.py``'s two-process test: one process, two accumulation steps of the same
    global batch, which that test shows equal to one node with two processes (``--nproc 2``). Its final folder."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = train(run_config(world, out, **{**COMMON, "engine.grad_accum": 2}), registry)
    assert result.final_dir is not None
    return result.final_dir


def test_two_nodes_equal_one_node_and_resume_from_node_local_folders(
    world: dict[str, Path], one_process_accumulating: Path, tmp_path: Path
) -> None:
    config = _config(world, "run", tmp_path / "run.yaml", **{"engine.node_local_checkpoints": True})
    for code, text in _two_nodes(config, tmp_path):
        assert code == 0, text[-3000:]
    node0, node1 = tmp_path / "node0" / "run", tmp_path / "node1" / "run"
    reference = weights(one_process_accumulating)
    trained = weights(node0 / "final")
    assert trained.keys() == reference.keys()
    for key in reference:  # the tolerance of test_training.py's two-process test
        torch.testing.assert_close(trained[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)
    # rank 0's node has the log and the export; each node its own checkpoint folders, with its own ZeRO shard
    assert not (node1 / "final").exists() and not (node1 / "log.jsonl").exists()
    for node, rank in ((node0, 0), (node1, 1)):
        files = sorted(p.name for p in (node / "checkpoints" / STEP.format(3)).iterdir())
        assert f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in files, files
        assert f"zero_pp_rank_{1 - rank}_mp_rank_00_optim_states.pt" not in files
        assert {"mp_rank_00_model_states.pt", "fourm_checkpoint.json"} <= set(files)
        assert (node / "checkpoints" / STEP.format(2)).is_dir()
    # node 1 loses its latest checkpoint: both nodes resume from step 2, the newest they both have, and train step 3
    # again to the same weights
    shutil.rmtree(node1 / "checkpoints" / STEP.format(3))
    results = _two_nodes(config, tmp_path)
    assert all(code == 0 for code, _ in results), results[0][1][-2000:] + results[1][1][-2000:]
    assert "resumed at step 2" in results[0][1]
    assert "not on every node" in results[0][1]  # node 0's keeper says why its step 3 was skipped
    again = weights(node0 / "final")
    for key in reference:
        torch.testing.assert_close(again[key], trained[key], rtol=1e-6, atol=1e-7, msg=key)


#: two ranks in a gloo group (no DeepSpeed, no data): check_out_dir for each scenario (mode, rank 0's folder, rank
#: 1's folder) of the JSON in argv, one line each
CHECK_DIR = """
import json, os, sys
from pathlib import Path
import torch.distributed as dist
from fourm_core.training.checkpoints import CheckpointError
from fourm_core.training.node_checkpoints import check_out_dir
dist.init_process_group("gloo")
for mode, *folders in json.loads(sys.argv[1]):
    try:
        check_out_dir(Path(folders[dist.get_rank()]), node_local=mode == "node-local")
        print("ok")
    except CheckpointError as exc:
        print("refused:", exc)
dist.barrier()
dist.destroy_process_group()
"""


def _check_dirs(scenarios: list[tuple[str, Path, Path]]) -> list[tuple[str, str]]:
    """check_out_dir on two "nodes" (one process each, LOCAL_RANK 0 both): (rank 0's line, rank 1's) by scenario."""
    port = str(_free_port())
    procs = []
    for r in (0, 1):
        env = {**_env(), "RANK": str(r), "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1"}
        env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
        command = [sys.executable, "-c", CHECK_DIR, json.dumps([[m, str(a), str(b)] for m, a, b in scenarios])]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    lines = [[x for x in out.splitlines() if x.startswith(("ok", "refused"))] for out in outputs]
    assert all(len(x) == len(scenarios) for x in lines), outputs
    return list(zip(*lines))


def test_out_dir_not_as_configured_is_refused_at_start(tmp_path: Path) -> None:
    """A "shared" out_dir some node does not see, and "node-local" folders that are one folder, are refused on
    every rank before anything is trained (not found at the first resume, or as nodes overwriting each other)."""
    a, b, c = (tmp_path / name / "checkpoints" for name in "abc")
    blocked = tmp_path / "a-file" / "checkpoints"  # under a file: node 1's keeper cannot create it
    blocked.parent.write_text("not a folder")
    shared, local, unseen, kept, one, unwritable = _check_dirs(
        [
            ("shared", a, a),
            ("node-local", a, b),
            ("shared", a, c),
            ("shared", a, b),
            ("node-local", a, a),
            ("node-local", a, blocked),
        ]
    )
    assert shared == local == ("ok", "ok")
    assert "rank(s) 1 found out_dir not as configured" in unseen[0]
    assert f"{c} does not hold the mark" in unseen[1] and "set engine.node_local_checkpoints: true" in unseen[1]
    assert f"{b} does not hold the mark" in kept[1]  # b was node 1's own folder a moment ago: its mark is not taken
    assert all(line.startswith("refused") for line in one), one
    assert sum("kept by rank" in line and "leave it off" in line for line in one) == 1, one
    assert [p.name for p in a.iterdir()] == [] and [p.name for p in b.iterdir()] == []  # the marks are removed
    assert f"{blocked}: cannot write there" in unwritable[1] and "rank(s) 1 found" in unwritable[0]


# -- the flags, cheaply -----------------------------------------------------------------------------------------
def test_node_flags_become_torchrun_options() -> None:
    assert LaunchPlan(nproc=2).torchrun_args(1234) == [
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        "--master_port=1234",
    ]  # --nproc alone: as before this issue
    static = LaunchPlan(nproc=4, nnodes=2, node_rank=1, master_addr="10.0.0.1")
    static.check()
    assert static.torchrun_args(1234, environ={}) == [
        "--nproc_per_node=4",
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=10.0.0.1",
        f"--master_port={DEFAULT_PORT}",
    ]
    assert static.torchrun_args(1234, environ={"MASTER_PORT": "6000"})[-1] == "--master_port=6000"
    c10d = LaunchPlan(nproc=8, nnodes=4, rdzv_endpoint="head:29400", rdzv_id="job7")
    c10d.check()
    assert c10d.torchrun_args(1234) == [
        "--nnodes=4",
        "--nproc_per_node=8",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=head:29400",
        "--rdzv_id=job7",
    ]
    assert not LaunchPlan().needs_torchrun and LaunchPlan(nnodes=2, node_rank=0, master_addr="h").needs_torchrun


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--nnodes", "2", "--node-rank", "0"], "--nnodes 2 needs --master-addr"),
        (["--nnodes", "2", "--master-addr", "h"], "--nnodes 2 needs --node-rank (0 to 1"),
        (["--nnodes", "2", "--node-rank", "2", "--master-addr", "h"], "--node-rank 2: expected 0 to 1"),
        (["--master-port", "70000"], "argument --master-port: expected a TCP port (1 to 65535), got 70000"),
        (["--rdzv-endpoint", "head"], "argument --rdzv-endpoint: expected HOST:PORT"),
        (["--rdzv-endpoint", "head:1", "--master-addr", "h"], "--rdzv-endpoint replaces --master-addr"),
        (["--rdzv-endpoint", "head:1", "--node-rank", "0"], "--node-rank: the c10d rendezvous"),
        (["--rdzv-id", "x"], "--rdzv-id names a c10d rendezvous"),
    ],
)
def test_node_flag_mistakes_are_one_line(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "never-read.yaml"  # the flags are checked before the config is read
    try:
        code = fourm(["train", "--config", str(config), *flags])
    except SystemExit as exc:  # argparse's type errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1, err


# -- other launchers' environments ------------------------------------------------------------------------------
def test_deepspeed_launcher_local_rank_argument(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``deepspeed --module fourm_core.training.launch`` passes ``--local_rank=N`` first: accepted, and it sets
    LOCAL_RANK; LOCAL_SIZE (DeepSpeed's name) becomes LOCAL_WORLD_SIZE."""
    assert launch.parse_args(["--local_rank=1", "--config", "c.yaml"]).local_rank == 1
    for name in ("LOCAL_RANK", "RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE"):
        monkeypatch.delenv(name, raising=False)
    # the whole entry point parses it (and then stops at the missing config, in one line naming the rank's place)
    assert launch.main(["--local_rank=0", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert os.environ["LOCAL_RANK"] == "0"
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_SIZE": "4"}
    assert adopt_launcher_environment(1, env) == "deepspeed" and env["LOCAL_WORLD_SIZE"] == "4"
    with pytest.raises(ValueError, match="disagrees with LOCAL_RANK=1"):
        adopt_launcher_environment(2, env)


def test_srun_tasks_become_torchrun_ranks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    step = {
        "SLURM_PROCID": "5",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
        "SLURM_STEP_NODELIST": "gpu07",
        "SLURM_JOB_ID": "123456",
    }
    assert slurm_environment(dict(step)) == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(DEFAULT_PORT + 456),
    }
    # a batch script's own shell (no srun step), a torchrun inside srun, a step of one task: left alone
    assert slurm_environment({k: v for k, v in step.items() if k != "SLURM_STEP_NUM_TASKS"}) is None
    assert slurm_environment({**step, "RANK": "0"}) is None
    assert slurm_environment({**step, "SLURM_STEP_NUM_TASKS": "1"}) is None
    # several hosts: the first from SLURM's own expansion (scontrol), else one line saying what to export
    many = {**step, "SLURM_STEP_NODELIST": "gpu[07-08]"}
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValueError, match="export MASTER_ADDR="):
        slurm_environment(dict(many))
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\nprintf 'gpu07\\ngpu08\\n'\n")
    scontrol.chmod(0o755)
    assert (slurm_environment(dict(many)) or {})["MASTER_ADDR"] == "gpu07"
    kept = slurm_environment({**many, "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "7000"}) or {}
    assert (kept["MASTER_ADDR"], kept["MASTER_PORT"]) == ("10.1.1.1", "7000")


def test_disagreeing_ranks_are_named() -> None:
    line = disagreement([4, -1], Path("/x/checkpoints"), node_local=False)
    assert "rank 0: step 4, rank 1: none" in line and "shared filesystem" in line
    assert "copy every node's checkpoint folders back" in disagreement([4, -1], Path("/x"), node_local=True)


def test_sbatch_script_starts_one_fourm_train_per_node(tmp_path: Path) -> None:
    """configs/slurm/fourm-train.sbatch under stand-ins for SLURM (``srun`` running its command once per node with
    that node's SLURM_NODEID, ``scontrol`` expanding the node list) and for ``fourm``: the commands it starts, each
    argument as passed (an option value with a space stays one argument)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {
        "scontrol": "#!/bin/sh\nprintf 'gpu07\\ngpu08\\n'\n",
        # drop srun's own options, run the command once per node
        "srun": "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n"
        'for ((n = 0; n < SLURM_NNODES; n++)); do SLURM_NODEID=$n "$@"; done\n',
        # each argument bracketed, so one with a space shows as one
        "fourm": '#!/bin/sh\nfor a in "$@"; do printf \'[%s]\' "$a"; done; echo\n',
    }
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_GPUS_PER_NODE": "h100:4",
    }
    script = Path(__file__).resolve().parents[1] / "configs" / "slurm" / "fourm-train.sbatch"
    proc = subprocess.run(
        ["bash", str(script), "run.yaml", "--set", "schedule.steps=2 0"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    started = [line for line in proc.stdout.splitlines() if line.startswith("[train]")]
    flags = "[--nproc][4][--nnodes][2][--node-rank][{}][--master-addr][gpu07][--master-port][29742]"
    assert started == [f"[train][--config][run.yaml]{flags.format(r)}[--set][schedule.steps=2 0]" for r in (0, 1)]
