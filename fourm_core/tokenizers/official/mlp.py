"""ml-4m's MLP encoders and decoders (``BottleneckMLP/B_6-Wi_1024`` style ids) for the global and pose tokenizers.

The DINOv2-global, ImageBind-global and human-pose tokenizers encode one vector per sample (a (B, C, 1, 1) map or a
(B, C) vector) with a residual bottleneck MLP from "Scaling MLPs" (arXiv 2306.13575): ``linear_in``, then per block
``x + block(layernorms[i](x))`` with ``block = Linear(thin, wide), GELU, Linear(wide, thin)``, then ``linear_out``.
State-dict names are ml-4m's (``linear_in``, ``blocks.{i}.block.{0,2}``, ``layernorms.{i}``, ``linear_out``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from einops import rearrange
from torch import nn

__all__ = ["BottleneckMLP", "StandardMLP", "build_mlp", "parse_mlp_id"]


def _pointwise(fn: Any, x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to each pixel of a (B, D, H, W) map, or directly to a (..., D) tensor."""
    if x.ndim != 4:
        return fn(x)
    h, w = x.shape[-2:]
    out = fn(rearrange(x, "b d h w -> b (h w) d"))
    return rearrange(out, "b (h w) d -> b d h w", h=h, w=w)


class _BottleneckBlock(nn.Module):
    def __init__(self, thin: int, wide: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(thin, wide), nn.GELU(), nn.Linear(wide, thin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class BottleneckMLP(nn.Module):
    """Residual bottleneck MLP; ``block_dims`` lists ``[wide, thin]`` per block (ml-4m's constructor keyword)."""

    def __init__(self, dim_in: int, dim_out: int, block_dims: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        self.linear_in = nn.Linear(dim_in, block_dims[0][1])
        self.linear_out = nn.Linear(block_dims[-1][1], dim_out)
        self.blocks = nn.ModuleList(_BottleneckBlock(thin=thin, wide=wide) for wide, thin in block_dims)
        self.layernorms = nn.ModuleList(nn.LayerNorm(thin) for _, thin in block_dims)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear_in(x)
        for block, norm in zip(self.blocks, self.layernorms):
            x = x + block(norm(x))
        return self.linear_out(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise(self._run, x)


class StandardMLP(nn.Module):
    """Plain MLP (``MLP/B_n-Wi_w`` ids): ``linear_in``, then per layer ``layers[i](layernorms[i](z))``,
    ``linear_out``; no activation between layers, exactly as ml-4m's ``StandardMLP`` computes it."""

    def __init__(self, dim_in: int, dim_out: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        self.linear_in = nn.Linear(dim_in, widths[0])
        self.linear_out = nn.Linear(widths[-1], dim_out)
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.layernorms = nn.ModuleList(nn.LayerNorm(widths[i + 1]) for i in range(len(widths) - 1))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear_in(x)
        for layer, norm in zip(self.layers, self.layernorms):
            z = layer(norm(z))
        return self.linear_out(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pointwise(self._run, x)


def parse_mlp_id(model_id: str) -> tuple[str, int, int, int]:
    """``"BottleneckMLP/B_6-Wi_1024[-E_4]"`` -> (kind, blocks, width, expansion), as ml-4m's ``build_mlp`` reads it."""
    try:
        kind, arch = model_id.split("/")
        parts = arch.split("-")
        blocks = int(parts[0].split("_")[1])
        width = int(parts[1].split("_")[1])
        expansion = int(parts[2].split("_")[1]) if len(parts) == 3 else 4
    except (ValueError, IndexError):
        raise ValueError(f"{model_id!r} is not an MLP id like 'BottleneckMLP/B_6-Wi_1024'") from None
    if kind not in ("BottleneckMLP", "MLP"):
        raise ValueError(f"{model_id!r}: unknown MLP kind {kind!r} (BottleneckMLP or MLP)")
    return kind, blocks, width, expansion


def build_mlp(
    model_id: str, dim_in: int | None, dim_out: int | None, overrides: Mapping[str, Any] | None = None
) -> BottleneckMLP | StandardMLP:
    """The MLP ``model_id`` names; a missing ``dim_in`` / ``dim_out`` is the MLP width (as in ml-4m). ``overrides``
    (a ``fourm_size_overrides`` entry) replaces the constructor keywords ``block_dims`` / ``widths``."""
    kind, blocks, width, expansion = parse_mlp_id(model_id)
    extra = dict(overrides or {})
    if kind == "BottleneckMLP":
        block_dims = extra.pop("block_dims", [[expansion * width, width] for _ in range(blocks)])
        width = block_dims[0][1]
        model: BottleneckMLP | StandardMLP = BottleneckMLP(dim_in or width, dim_out or width, block_dims, **extra)
    else:
        widths = extra.pop("widths", [width] * blocks)
        width = widths[0]
        model = StandardMLP(dim_in or width, dim_out or width, widths, **extra)
    return model
