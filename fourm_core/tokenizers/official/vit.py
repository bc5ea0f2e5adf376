"""ml-4m's ViT encoder and decoder for the official VQ-VAE tokenizers, with ml-4m's state-dict names and numerics.

The published tokenizers (``EPFL-VILAB/4M_tokenizers_*``) store these modules under ``encoder.*`` / ``decoder.*``
with ml-4m's names: ``pos_emb`` (a frozen 2D sine-cosine Parameter of shape (1, D, N_H, N_W), bicubically
interpolated to the input's token grid), ``proj`` (the patch projection, or a 1x1 conv when ``patch_proj=False``:
the feature-map tokenizers take an already patchified (B, C, N_H, N_W) map), ``blocks.{i}.{norm1,attn.qkv,
attn.proj,norm2,mlp.fc1,mlp.fc2}``, the optional tanh ``post_mlp`` with its ``norm_mlp``, the decoder's
``out_proj`` and its optional ``out_conv`` of two ConvNeXt blocks (the SAM-instance tokenizer).

Library reuse: timm's ``Mlp`` has exactly ml-4m's names (``fc1``, ``fc2``) and operations, so it is used. timm's
``Attention`` and ``Block`` have the same names but scale ``q`` before the product (or call fused SDPA) where
ml-4m scales ``q @ k^T``; those round differently and can flip a token at a near tie, so attention is written here
in ml-4m's order. timm's ConvNeXt block names its layers ``conv_dw`` / ``mlp.fc1``, not ``dwconv`` / ``pwconv1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp
from torch import nn

__all__ = [
    "VIT_SIZES",
    "Attention",
    "Block",
    "ConvNeXtBlock",
    "ViTDecoder",
    "ViTEncoder",
    "build_2d_sincos_posemb",
    "build_vit",
]

#: ml-4m's builder names (``fourm/vq/models/vit_models.py``) -> ViT sizes; the ``_enc`` / ``_dec`` suffix picks the
#: class. All use mlp_ratio 4, qkv bias and LayerNorm eps 1e-6.
VIT_SIZES: dict[str, dict[str, int]] = {
    "vit_s": dict(dim_tokens=512, depth=8, num_heads=8),
    "vit_b": dict(dim_tokens=768, depth=12, num_heads=12),
    "vit_l": dict(dim_tokens=1024, depth=24, num_heads=16),
}

_LN_EPS = 1e-6


def build_2d_sincos_posemb(h: int, w: int, embed_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo-v3 2D sine-cosine embedding as ml-4m builds it, shape (1, embed_dim, h, w).

    ml-4m meshes ``(w, h)`` with ``indexing='ij'`` and then reads the flat grid as ``(h w)``, so for a non-square grid
    the roles of the two axes are transposed (reference quirk 10.2.2). The published weights carry the built value,
    so this only matters for a model built without loading; it is replicated so both agree."""
    if embed_dim % 4:
        raise ValueError(f"2D sin-cos position embedding needs a width divisible by 4, got {embed_dim}")
    grid_w, grid_h = torch.meshgrid(
        torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij"
    )
    pos_dim = embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    emb = torch.cat([torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], dim=1)[None]
    return rearrange(emb, "b (h w) d -> b d h w", h=h, w=w)


class Attention(nn.Module):
    """Multi-head self-attention with ml-4m's names (``qkv``, ``proj``) and its order of operations."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` (no drop path at inference)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (depthwise 7x7, channels-last LayerNorm, 4x MLP, layer scale ``gamma``), ml-4m's names."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class _ViTBase(nn.Module):
    """What the encoder and decoder share: the frozen sin-cos ``pos_emb`` and the ``blocks``."""

    def __init__(
        self, patch_size: int, resolution: int, dim_tokens: int, depth: int, num_heads: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if resolution % patch_size:
            raise ValueError(f"image size {resolution} is not divisible by the patch size {patch_size}")
        self.patch_size = patch_size
        self.dim_tokens = dim_tokens
        n = resolution // patch_size
        # a Parameter, not a buffer, because that is where ml-4m's checkpoints keep it (``*.pos_emb``)
        self.pos_emb = nn.Parameter(build_2d_sincos_posemb(n, n, dim_tokens), requires_grad=False)
        self._block_args = (dim_tokens, num_heads, mlp_ratio)
        self._depth = depth

    def _build_blocks(self) -> None:
        dim, heads, ratio = self._block_args
        self.blocks = nn.Sequential(*[Block(dim, heads, ratio) for _ in range(self._depth)])

    def _add_pos_emb(self, x: torch.Tensor, n_h: int, n_w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_emb, size=(n_h, n_w), mode="bicubic", align_corners=False)
        return x + rearrange(pos, "b d nh nw -> b (nh nw) d")


class ViTEncoder(_ViTBase):
    """Images (B, C, H, W), or feature maps (B, C, N_H, N_W) when ``patch_proj=False``, to (B, D, N_H, N_W)."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        patch_size: int = 16,
        resolution: int = 256,
        dim_tokens: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_proj: bool = True,
        post_mlp: bool = False,
    ) -> None:
        super().__init__(patch_size, resolution, dim_tokens, depth, num_heads, mlp_ratio)
        self.patch_proj = patch_proj
        kernel = patch_size if patch_proj else 1
        self.proj = nn.Conv2d(in_channels, dim_tokens, kernel_size=kernel, stride=kernel)
        self._build_blocks()
        if post_mlp:
            self.norm_mlp = nn.LayerNorm(dim_tokens, eps=_LN_EPS)
            self.post_mlp = Mlp(dim_tokens, int(mlp_ratio * dim_tokens), act_layer=nn.Tanh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_proj:
            h, w = x.shape[-2:]
            p = self.patch_size
            if h % p or w % p:
                raise ValueError(f"input of {h}x{w} is not divisible by the patch size {p}")
            n_h, n_w = h // p, w // p
        else:
            n_h, n_w = x.shape[-2:]
        x = self._add_pos_emb(rearrange(self.proj(x), "b d nh nw -> b (nh nw) d"), n_h, n_w)
        x = self.blocks(x)
        if hasattr(self, "post_mlp"):
            # ml-4m runs the tanh MLP in fp32 even under autocast (ViT-VQGAN's factorised codes are sensitive)
            with torch.autocast(device_type=x.device.type, enabled=False):
                x = x.float() + self.post_mlp(self.norm_mlp(x.float()))
        return rearrange(x, "b (nh nw) d -> b d nh nw", nh=n_h, nw=n_w)


class ViTDecoder(_ViTBase):
    """Latents (B, D, N_H, N_W) to images (B, C, H, W), or to (B, C, N_H, N_W) when ``patch_proj=False``."""

    def __init__(
        self,
        *,
        out_channels: int = 3,
        patch_size: int = 16,
        resolution: int = 256,
        dim_tokens: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_proj: bool = True,
        post_mlp: bool = False,
        out_conv: bool = False,
    ) -> None:
        super().__init__(patch_size, resolution, dim_tokens, depth, num_heads, mlp_ratio)
        self.out_channels = out_channels
        self.patch_proj = patch_proj
        self._build_blocks()
        if post_mlp:
            self.norm_mlp = nn.LayerNorm(dim_tokens, eps=_LN_EPS)
            self.post_mlp = Mlp(dim_tokens, int(mlp_ratio * dim_tokens), act_layer=nn.Tanh)
        per_token = out_channels * patch_size * patch_size if patch_proj else out_channels
        self.out_proj = nn.Linear(dim_tokens, per_token)
        if out_conv:
            self.out_conv = nn.Sequential(ConvNeXtBlock(out_channels), ConvNeXtBlock(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_h, n_w = x.shape[-2:]
        x = self._add_pos_emb(rearrange(x, "b d nh nw -> b (nh nw) d"), n_h, n_w)
        x = self.blocks(x)
        if hasattr(self, "post_mlp"):
            x = x + self.post_mlp(self.norm_mlp(x))  # ml-4m: no fp32 island on the decoder side
        x = self.out_proj(x)
        p = self.patch_size if self.patch_proj else 1
        x = rearrange(x, "b (nh nw) (c ph pw) -> b c (nh ph) (nw pw)", nh=n_h, nw=n_w, ph=p, pw=p, c=self.out_channels)
        if hasattr(self, "out_conv"):
            x = self.out_conv(x)
        return x


def build_vit(
    name: str,
    channels: int,
    patch_size: int,
    resolution: int,
    *,
    patch_proj: bool = True,
    post_mlp: bool = False,
    out_conv: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> ViTEncoder | ViTDecoder:
    """The ViT ml-4m's builder ``name`` (``vit_b_enc``, ``vit_l_dec``, ...) makes; ``channels`` is the encoder's input
    or the decoder's output channel count. ``overrides`` (the CI fixtures' ``fourm_size_overrides`` entry for this
    sub-module) replaces constructor keywords such as ``dim_tokens``, ``depth`` and ``num_heads``."""
    size, _, role = name.rpartition("_")
    if size not in VIT_SIZES or role not in ("enc", "dec"):
        known = sorted(f"{s}_{r}" for s in VIT_SIZES for r in ("enc", "dec"))
        raise ValueError(f"unknown ViT architecture {name!r}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = dict(VIT_SIZES[size], patch_size=patch_size, resolution=resolution)
    kwargs.update(patch_proj=patch_proj, post_mlp=post_mlp)
    if role == "enc":
        kwargs.update(overrides or {})
        return ViTEncoder(in_channels=channels, **kwargs)
    kwargs.update(out_conv=out_conv, **(overrides or {}))
    return ViTDecoder(out_channels=channels, **kwargs)
