"""Which accelerator a training process runs on, how its process group is set up, and that accelerator's peak.

``engine.device`` (``fourm train --device``) is ``cuda``, ``cpu`` or ``auto``:

* ``cuda`` without a visible CUDA GPU is refused before anything is built (one line, :class:`DeviceError`);
* ``auto`` takes CUDA when ``torch.cuda.is_available()`` and the CPU otherwise, and says so (:func:`describe`);
* ``cpu`` runs on the CPU even where a GPU is visible.

On CUDA each process binds its GPU (``torch.cuda.set_device(LOCAL_RANK)``) *before* the process group is created,
so NCCL's first collective (a barrier) uses the right device instead of every rank's GPU 0; DeepSpeed's accelerator
(``DS_ACCELERATOR``) and the backend (NCCL / gloo) follow the choice instead of being guessed.

The MFU divides model FLOP/s by the accelerator's dense peak for the training dtype (:func:`accelerator_peak`):
NVIDIA's datasheet figure for the GPUs of :data:`DATASHEET_TFLOPS` (found from ``torch.cuda.get_device_name()``), and
otherwise the measured square-matmul peak of this device (the CPU, or a GPU not in the table). ``engine.peak_gflops``
overrides both.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from fourm_core.devices import DeviceError
from fourm_core.devices import resolve_device as _resolve_device

__all__ = [
    "DATASHEET_TFLOPS",
    "DeviceError",
    "Peak",
    "accelerator_peak",
    "datasheet_peak",
    "describe",
    "init_distributed",
    "measure_cuda_peak",
    "resolve_device",
]

log = logging.getLogger("fourm.train")

DeviceChoice = Literal["auto", "cuda", "cpu"]

#: Dense (no structured sparsity) peak TFLOP/s per GPU from NVIDIA's datasheets, by SKU: ``bf16`` tensor core,
#: ``fp32`` the CUDA cores (what an fp32 matmul gets with TF32 off, PyTorch's default), ``tf32`` tensor core. The
#: datasheets print the sparse figures with an asterisk: the dense ones are half of those.
#: A100: "NVIDIA A100 Tensor Core GPU" datasheet (SXM4 and PCIe have the same peaks, 40 and 80 GB alike).
#: H100: "NVIDIA H100 Tensor Core GPU" datasheet (SXM5 and PCIe differ). H200: "NVIDIA H200 Tensor Core GPU"
#: datasheet (SXM has H100 SXM's compute; NVL is lower).
DATASHEET_TFLOPS: dict[str, dict[str, float]] = {
    "A100 (SXM4/PCIe)": {"bf16": 312.0, "fp32": 19.5, "tf32": 156.0},
    "H100 SXM": {"bf16": 989.5, "fp32": 67.0, "tf32": 494.5},
    "H100 PCIe": {"bf16": 756.5, "fp32": 51.0, "tf32": 378.0},
    "H100 NVL": {"bf16": 835.5, "fp32": 60.0, "tf32": 417.5},
    "H200 SXM": {"bf16": 989.5, "fp32": 67.0, "tf32": 494.5},
    "H200 NVL": {"bf16": 835.5, "fp32": 60.0, "tf32": 417.5},
}

#: ``torch.cuda.get_device_name()`` patterns (lower case, all must occur) -> SKU, most specific first. The names
#: the driver reports: "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA H100 80GB HBM3" (SXM),
#: "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL".
_NAME_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h200", "nvl"), "H200 NVL"),
    (("h200",), "H200 SXM"),
    (("h100", "nvl"), "H100 NVL"),
    (("h100", "pcie"), "H100 PCIe"),
    (("h100",), "H100 SXM"),
    (("a100",), "A100 (SXM4/PCIe)"),
)


def resolve_device(choice: str, source: str = "engine.device") -> Literal["cuda", "cpu"]:
    """``cuda`` or ``cpu`` for a ``choice`` of ``auto`` / ``cuda`` / ``cpu``; ``cuda`` without a GPU raises
    :class:`DeviceError` (the one rule every stage shares: :func:`fourm_core.devices.resolve_device`)."""
    return _resolve_device(choice, source or "engine.device")


def local_gpu(local_rank: int, visible: int) -> int:
    """The GPU index of a process: its local rank, or 0 where the scheduler gave each process its own single GPU
    (``srun --gpus-per-task=1`` sets ``CUDA_VISIBLE_DEVICES`` to one device per task, while ``LOCAL_RANK`` still
    counts the node's tasks). More processes than GPUs is refused, never silently shared."""
    if local_rank < visible:
        return local_rank
    isolated = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible == 1 and isolated and "," not in isolated:
        return 0
    raise DeviceError(f"LOCAL_RANK {local_rank}: this machine has {visible} CUDA GPUs (one process per GPU)")


def describe(device: str, choice: str) -> str:
    """One line naming the device, how it was chosen and the backend (printed at start, logged)."""
    how = "chosen by auto" if choice == "auto" else "as asked"
    if device == "cuda":
        index = torch.cuda.current_device()
        return f"device: cuda:{index} ({torch.cuda.get_device_name(index)}), {how}; NCCL"
    return f"device: cpu ({torch.get_num_threads()} threads), {how}; gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """(rank, world size) on ``device`` (``auto`` resolved by :func:`resolve_device`). Under torchrun the
    environment says; alone, a world of one on 127.0.0.1. DeepSpeed's accelerator is set to the device (it would
    otherwise look for a GPU, or take one the user did not ask for); on CUDA this process's GPU is bound from
    ``LOCAL_RANK`` before the process group exists."""
    device = resolve_device(device)
    os.environ["DS_ACCELERATOR"] = device
    if "RANK" not in os.environ:
        os.environ.update(
            {
                "RANK": "0",
                "LOCAL_RANK": "0",
                "WORLD_SIZE": "1",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": os.environ.get("MASTER_PORT", str(_free_port())),
            }
        )
    if device == "cuda":
        torch.cuda.set_device(local_gpu(int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()))
    backend = "nccl" if device == "cuda" else "gloo"
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        # torch's own env:// init first: under torchrun it joins the launcher's store (DeepSpeed's init would try
        # to open a second server on MASTER_PORT and fail); DeepSpeed then adopts the process group
        kwargs = {"device_id": torch.device("cuda", torch.cuda.current_device())} if device == "cuda" else {}
        dist.init_process_group(backend, **kwargs)
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return dist.get_rank(), dist.get_world_size()


# -- the accelerator's peak ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peak:
    """Dense peak of one process in GFLOP/s and where the figure comes from (said at start, beside the MFU)."""

    gflops: float
    source: str

    def line(self) -> str:
        return f"MFU peak: {self.gflops / 1000:,.1f} TFLOP/s per process ({self.source})"


def _dtype_column(dtype: torch.dtype, tf32: bool) -> str:
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float32:
        return "tf32" if tf32 else "fp32"
    raise ValueError(f"no datasheet column for {dtype}")


def tf32_matmuls() -> bool:
    """Whether fp32 matmuls run on TF32 tensor cores (``torch.set_float32_matmul_precision`` below highest)."""
    return torch.get_float32_matmul_precision() != "highest" or bool(torch.backends.cuda.matmul.allow_tf32)


def datasheet_peak(name: str, dtype: torch.dtype, tf32: bool = False) -> tuple[float, str] | None:
    """(GFLOP/s, source) of the GPU called ``name`` (``torch.cuda.get_device_name()``) for ``dtype``, or ``None``
    when the table has no such GPU."""
    lowered = name.lower()
    for parts, sku in _NAME_RULES:
        if all(p in lowered for p in parts):
            column = _dtype_column(dtype, tf32)
            return DATASHEET_TFLOPS[sku][column] * 1000.0, f"NVIDIA {sku} datasheet, {column} dense, for {name!r}"
    return None


def measure_cuda_peak(dtype: torch.dtype, size: int = 8192, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Median GFLOP/s of ``size`` x ``size`` matmuls in ``dtype`` on the current CUDA device."""
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    out = torch.empty(size, size, device="cuda", dtype=dtype)
    torch.mm(a, b, out=out)
    torch.cuda.synchronize()
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            n += 1
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            if seconds >= min_seconds:
                break
        rates.append(2.0 * size**3 * n / seconds / 1e9)
    return statistics.median(rates)


def accelerator_peak(
    device: str,
    dtype: torch.dtype,
    *,
    threads: int | None = None,
    configured: float | None = None,
    device_name: Callable[[], str] | None = None,
    measure_cpu: Callable[..., float] | None = None,
    measure_gpu: Callable[[torch.dtype], float] = measure_cuda_peak,
) -> Peak:
    """The dense peak one process's MFU is divided by: ``configured`` (``engine.peak_gflops``) when given; on CUDA
    the datasheet figure of the GPU for ``dtype`` (:func:`datasheet_peak`), else the measured matmul peak of the
    GPU; on the CPU the measured matmul peak on ``threads`` threads. ``device_name`` and the measurers are
    parameters for tests (a GPU name without a GPU)."""
    if configured is not None:
        return Peak(float(configured), "engine.peak_gflops")
    kind = str(dtype).removeprefix("torch.")
    if device == "cuda":
        name = (device_name or (lambda: torch.cuda.get_device_name(torch.cuda.current_device())))()
        found = datasheet_peak(name, dtype, tf32=dtype == torch.float32 and tf32_matmuls())
        if found is not None:
            return Peak(*found)
        return Peak(measure_gpu(dtype), f"measured {kind} matmul on {name!r} (not in the datasheet table)")
    if measure_cpu is None:
        from fourm_core.training.flops import measure_matmul_peak

        measure_cpu = measure_matmul_peak
    return Peak(measure_cpu(threads, dtype=dtype), f"measured {kind} matmul on the CPU, {threads or 'all'} threads")
