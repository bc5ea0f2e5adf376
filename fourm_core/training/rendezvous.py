"""How the processes of one training find each other, whoever starts them.

The engine reads one convention, torchrun's (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``: :func:`fourm_core.training.device.init_distributed`). This module brings every
way of starting a training to it, instead of teaching the engine each launcher:

* ``fourm train`` itself (:class:`LaunchPlan`): ``--nproc K`` alone is torchrun on 127.0.0.1 as before;
  ``--nnodes N --node-rank R --master-addr A --master-port P`` is torchrun's static rendezvous (every node runs the
  same command with its own ``--node-rank``), ``--rdzv-endpoint HOST:PORT --rdzv-id ID`` its c10d rendezvous (node
  ranks assigned by the rendezvous). The flags are checked before anything starts, each mistake one line.
* DeepSpeed's launcher (``deepspeed --hostfile H --module fourm_core.training.launch ...``) sets torchrun's
  variables except ``LOCAL_WORLD_SIZE`` (it calls it ``LOCAL_SIZE``) and passes ``--local_rank=N`` as an argument
  (:func:`adopt_launcher_environment` takes both).
* SLURM's ``srun`` with one task per GPU: ``SLURM_PROCID`` / ``SLURM_STEP_NUM_TASKS`` / ``SLURM_LOCALID`` become
  ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` when no launcher set torchrun's variables (:func:`slurm_environment`).
  Only inside an ``srun`` step: a batch script's own shell has ``SLURM_PROCID=0`` and the job's task count too,
  and a process started there directly would wait for peers that never come.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from collections.abc import MutableMapping
from dataclasses import dataclass

from fourm_core.errors import UsageError

__all__ = [
    "DEFAULT_PORT",
    "WORLD_VARIABLES",
    "LaunchPlan",
    "adopt_launcher_environment",
    "endpoint",
    "port_number",
    "slurm_environment",
]

#: torchrun's default ``--master_port`` (and what its documentation uses): the port of node 0 when none is given
DEFAULT_PORT = 29500
#: the variables of one process group; a launcher's own (an embedding program, a test) must not leak into the one
#: it starts
WORLD_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def port_number(text: str) -> int:
    """``type=`` of ``--master-port``: a TCP port, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1 to 65535), got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1 to 65535), got {value}")
    return value


def endpoint(text: str) -> str:
    """``type=`` of ``--rdzv-endpoint``: ``HOST:PORT`` (``[::1]:PORT`` for an IPv6 address), as torchrun takes it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]"):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (the c10d rendezvous server), got {text!r}")
    port_number(port)
    return text


@dataclass(frozen=True)
class LaunchPlan:
    """The torchrun command ``fourm train`` runs for its process-count and node flags (``None``: not given)."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None

    @property
    def needs_torchrun(self) -> bool:
        """False for a world of one started without any node flag: it trains in this process, as always."""
        given = (self.node_rank, self.master_addr, self.master_port, self.rdzv_endpoint, self.rdzv_id)
        return self.nproc > 1 or self.nnodes > 1 or any(v is not None for v in given)

    def check(self) -> None:
        """Refuse a combination torchrun would hang on or misread, in one line naming the flag."""
        if self.rdzv_endpoint is not None:
            if self.master_addr is not None or self.master_port is not None:
                raise UsageError(
                    "--rdzv-endpoint replaces --master-addr/--master-port (c10d rendezvous); give one or the other"
                )
            if self.node_rank is not None:
                raise UsageError("--node-rank: the c10d rendezvous (--rdzv-endpoint) numbers the nodes; leave it out")
            return
        if self.rdzv_id is not None:
            raise UsageError("--rdzv-id names a c10d rendezvous: give --rdzv-endpoint HOST:PORT with it")
        if self.node_rank is not None and not 0 <= self.node_rank < self.nnodes:
            raise UsageError(
                f"--node-rank {self.node_rank}: expected 0 to {self.nnodes - 1} (node ranks count from 0, "
                f"--nnodes {self.nnodes})"
            )
        if self.nnodes > 1:
            if self.master_addr is None:
                raise UsageError(
                    f"--nnodes {self.nnodes} needs --master-addr (the address of node 0, reachable from every node) "
                    "or --rdzv-endpoint HOST:PORT"
                )
            if self.node_rank is None:
                raise UsageError(
                    f"--nnodes {self.nnodes} needs --node-rank (0 to {self.nnodes - 1}, a different one on each node)"
                )

    def torchrun_args(self, free_port: int, environ: MutableMapping[str, str] | None = None) -> list[str]:
        """torchrun's options for this plan (after :meth:`check`). ``free_port`` is used for a one-node run
        without ``--master-port`` (today's ``--nproc``); a multi-node run without one takes ``MASTER_PORT`` from
        the environment, else :data:`DEFAULT_PORT`, since every node must name the same port."""
        env = os.environ if environ is None else environ
        if self.rdzv_endpoint is not None:
            return [
                f"--nnodes={self.nnodes}",
                f"--nproc_per_node={self.nproc}",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint={self.rdzv_endpoint}",
                f"--rdzv_id={self.rdzv_id or 'fourm'}",
            ]
        if self.master_port is not None:
            port = self.master_port
        elif self.master_addr is None:
            port = free_port
        else:
            port = int(env.get("MASTER_PORT") or DEFAULT_PORT)
        out = [f"--nproc_per_node={self.nproc}"]
        if self.nnodes > 1:
            out += [f"--nnodes={self.nnodes}", f"--node_rank={self.node_rank or 0}"]
        return [*out, f"--master_addr={self.master_addr or '127.0.0.1'}", f"--master_port={port}"]


# -- other launchers' environments -------------------------------------------------------------------------------
def _tasks_per_node(text: str) -> list[int]:
    """SLURM's compressed task counts (``4(x2),3``) -> one count per node (``[4, 4, 3]``)."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m is None:
            return []
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def _first_host(nodelist: str) -> str | None:
    """The first host of a SLURM node list: the list itself when it names one host, else ``scontrol show
    hostnames`` (SLURM's own expansion of ``node[01-04,07]``; not re-implemented here)."""
    if not re.search(r"[\[,]", nodelist):
        return nodelist.strip() or None
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return None
    try:
        out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    hosts = out.stdout.split()
    return hosts[0] if out.returncode == 0 and hosts else None


def slurm_environment(env: MutableMapping[str, str]) -> dict[str, str] | None:
    """torchrun's variables for a task of an ``srun`` step (one task per GPU), or ``None`` when this is not one
    (a launcher already set ``RANK``, no SLURM step, or a step of one task, which trains alone anyway).

    ``MASTER_ADDR`` is kept when set, else the step's first host; ``MASTER_PORT`` is kept when set, else derived from
    the job id (every task computes the same one; two jobs sharing a node rarely collide)."""
    if "RANK" in env or "SLURM_PROCID" not in env or "SLURM_STEP_NUM_TASKS" not in env:
        return None
    try:
        world = int(env["SLURM_STEP_NUM_TASKS"])
        rank = int(env["SLURM_PROCID"])
        local = int(env.get("SLURM_LOCALID", "0"))
        node = int(env.get("SLURM_NODEID", "0"))
    except ValueError:
        raise UsageError(
            "SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID / SLURM_NODEID: expected whole numbers"
        ) from None
    if world <= 1:
        return None
    per_node = _tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE", ""))
    local_world = per_node[node] if node < len(per_node) else world
    addr = env.get("MASTER_ADDR") or _first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", ""))
    if not addr:
        raise UsageError(
            "srun: MASTER_ADDR is not set and the step's first host cannot be found (no scontrol); export "
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) before srun'
        )
    port = env.get("MASTER_PORT") or str(DEFAULT_PORT + int(env.get("SLURM_JOB_ID", "0") or 0) % 1000)
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(local),
        "LOCAL_WORLD_SIZE": str(local_world),
        "MASTER_ADDR": addr,
        "MASTER_PORT": port,
    }


def adopt_launcher_environment(
    local_rank: int | None = None, env: MutableMapping[str, str] | None = None
) -> str | None:
    """Fill in torchrun's variables from the launcher that started this process (a second call changes nothing).
    Returns what was filled in: ``"slurm"`` (the whole world, from an ``srun`` step), ``"deepspeed"``
    (``LOCAL_WORLD_SIZE`` from ``LOCAL_SIZE``), or ``None``.

    ``local_rank`` is the ``--local_rank=N`` argument DeepSpeed's launcher (and the old
    ``torch.distributed.launch``) passes: it sets ``LOCAL_RANK`` when the environment does not, and must agree
    with it when it does."""
    env = os.environ if env is None else env
    if local_rank is not None:
        if "LOCAL_RANK" in env and env["LOCAL_RANK"] != str(local_rank):
            raise UsageError(
                f"--local_rank={local_rank} disagrees with LOCAL_RANK={env['LOCAL_RANK']} in the environment"
            )
        env.setdefault("LOCAL_RANK", str(local_rank))
    if "RANK" in env:
        if "LOCAL_WORLD_SIZE" not in env and "LOCAL_SIZE" in env:  # DeepSpeed's launcher names it LOCAL_SIZE
            env["LOCAL_WORLD_SIZE"] = env["LOCAL_SIZE"]
            return "deepspeed"
        return None
    slurm = slurm_environment(env)
    if slurm is None:
        return None
    env.update(slurm)
    return "slurm"
