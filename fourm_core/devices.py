"""Where a stage's torch work runs and in which precision: ``--device auto|cpu|cuda`` and ``--dtype``, resolved once.

Every stage that runs networks (labeling teachers, tokenizer training, pre-tokenisation, model training) offers the
same two choices, and they must mean the same everywhere:

* ``cuda`` without a visible CUDA GPU is refused before anything is loaded (one line, :class:`DeviceError`, which
  the CLI prints as ``error: ...`` with exit code 2): a run that silently fell back to the CPU would take hours
  longer than the user planned for;
* ``auto`` takes CUDA when ``torch.cuda.is_available()`` and the CPU otherwise;
* ``fp32`` is IEEE fp32 on every device: on CUDA, cuDNN convolutions would otherwise run on TF32 tensor cores
  (PyTorch's default for convolutions), so the "same" fp32 tokenizer would write other tokens on a GPU than on the
  CPU. ``bf16`` runs the forward pass under ``torch.autocast`` (the CPU's autocast supports bf16 too) and keeps the
  weights in fp32, so training keeps fp32 master weights and needs no loss scaling.

:class:`Placement` is the resolved pair; it moves batches (pinned memory and ``non_blocking`` copies on CUDA, so the
copy overlaps the host's work on the next batch) and modules, and gives the record a stage writes into its outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from fourm_core.errors import UsageError

__all__ = [
    "DEVICE_CHOICES",
    "DTYPES",
    "DeviceError",
    "Placement",
    "ieee_fp32",
    "resolve_device",
    "resolve_dtype",
]

#: What ``--device`` accepts.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: ``--dtype`` names and their torch dtypes (a stage may accept fewer, see :func:`resolve_dtype`).
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(UsageError):
    """A device that cannot be used (``--device cuda`` without a GPU, an unknown device or dtype): one line."""


class _HasModules(Protocol):
    def modules(self) -> Sequence[torch.nn.Module]: ...


def resolve_device(choice: str, source: str = "--device") -> Literal["cpu", "cuda"]:
    """``cpu`` or ``cuda`` for a ``choice`` of ``auto`` / ``cpu`` / ``cuda``; ``cuda`` without a GPU raises
    :class:`DeviceError` naming ``source`` (the flag or config key the choice came from)."""
    if choice not in DEVICE_CHOICES:
        raise DeviceError(f"{source}: expected one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceError(
            f"{source}: cuda asked for, but no CUDA GPU is visible to this process (torch {torch.__version__}, "
            f"{build}); use --device cpu or auto"
        )
    if choice == "auto":
        return "cuda" if available else "cpu"
    return "cuda" if choice == "cuda" else "cpu"


def resolve_dtype(name: str, allowed: Sequence[str] = ("fp32", "bf16"), source: str = "--dtype") -> str:
    """``name`` checked against the precisions a stage supports (``allowed``)."""
    if name not in allowed or name not in DTYPES:
        raise DeviceError(f"{source}: expected one of {', '.join(allowed)}, got {name!r}")
    return name


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """fp32 matmuls and cuDNN convolutions in IEEE fp32 (no TF32) inside the block, the previous settings after it.

    Uses PyTorch's per-backend ``fp32_precision`` settings where this PyTorch has them (2.9 on: mixing them with
    the legacy ``allow_tf32`` flags is an error there, so those are then left alone), the legacy flags before."""
    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):
        saved = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
        return
    legacy = (torch.backends.cudnn.allow_tf32, matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = legacy


@dataclass(frozen=True)
class Placement:
    """A resolved device and precision: ``device`` is ``cpu`` or ``cuda``, ``dtype`` a key of :data:`DTYPES`,
    ``requested`` the device choice it came from (``auto`` / ``cpu`` / ``cuda``)."""

    device: Literal["cpu", "cuda"] = "cpu"
    dtype: str = "fp32"
    requested: str = "cpu"

    @classmethod
    def resolve(
        cls,
        device: str = "auto",
        dtype: str = "fp32",
        *,
        dtypes: Sequence[str] = ("fp32", "bf16"),
        source: str = "--device",
        dtype_source: str = "--dtype",
    ) -> Placement:
        """Check both choices (one :class:`DeviceError` line for either) and resolve ``auto``."""
        name = resolve_dtype(dtype, dtypes, dtype_source)
        return cls(resolve_device(device, source), name, device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's precision: ``torch.autocast`` in the run's dtype, or plain IEEE fp32 (on CUDA, TF32
        off; see the module docstring). Weights are not cast: they stay fp32."""
        with ExitStack() as stack:
            if self.dtype != "fp32":
                stack.enter_context(torch.autocast(device_type=self.device, dtype=self.torch_dtype))
            elif self.cuda:
                stack.enter_context(ieee_fp32())
            yield

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the device; from the host through pinned memory and a ``non_blocking`` copy on CUDA (PyTorch's
        pinned-memory cache keeps the buffer alive until the copy is done, so callers need no synchronisation)."""
        if not self.cuda or tensor.device.type == "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def move(self, holder: _HasModules) -> None:
        """Every module of ``holder`` (a :class:`~fourm_core.tokenizers.tokenizer.Tokenizer`, an official
        tokenizer, anything with ``modules()``) onto the device, weights kept in fp32."""
        for module in holder.modules():
            module.to(self.device)

    def record(self) -> dict[str, Any]:
        """What a stage writes into its record so a run can be reproduced: the device, how it was chosen, the
        precision, and the GPU's name on CUDA."""
        out: dict[str, Any] = {"device": self.device, "device_choice": self.requested, "dtype": self.dtype}
        if self.cuda:
            out["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
        return out

    def describe(self) -> str:
        """One line for the console: device, how it was chosen, precision."""
        how = "chosen by auto" if self.requested == "auto" else "as asked"
        where = (
            f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name(torch.cuda.current_device())})"
            if self.cuda
            else f"cpu ({torch.get_num_threads()} threads)"
        )
        return f"device: {where}, {how}; dtype {self.dtype}"
