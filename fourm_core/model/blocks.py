"""Transformer building blocks with ml-4m parameter names (``fourm/models/fm_utils.py``).

Attention runs through ``scaled_dot_product_attention``; masks are boolean with True = blocked, turned into an additive
``-finfo.max`` bias so fully masked rows give a uniform softmax (never NaN), as in the official explicit matmul.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm whose bias is a persistent zero buffer when ``bias=False`` (official no-bias models keep the key)."""

    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        if bias:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def attention_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, N, M) or (B, 1, M) bool, True = blocked -> (B, 1, N|1, M) additive float bias.

    A floating ``mask`` is taken as such a bias already and returned as is, so :class:`~fourm_core.model.FourMNetwork`
    builds each bias once per forward and shares it across blocks instead of rebuilding it in every block (and
    keeping one copy per block alive for the backward).
    """
    if mask is None or mask.is_floating_point():
        return mask
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    bias = bias.masked_fill(mask, -torch.finfo(dtype).max)
    return bias.unsqueeze(1)


@dataclass
class KVCache:
    """Keys/values of one decoder block during incremental decoding (:meth:`DecoderBlock.forward_cached`).

    ``k`` / ``v``: (B, H, T, head_dim) self-attention keys/values of the T positions decoded so far (grown by
    :meth:`append`); ``cross_k`` / ``cross_v``: the encoder context's keys/values, computed once per sequence.
    Not a module and never part of a state_dict.
    """

    cross_k: torch.Tensor
    cross_v: torch.Tensor
    k: torch.Tensor | None = field(default=None)
    v: torch.Tensor | None = field(default=None)

    @property
    def length(self) -> int:
        return 0 if self.k is None else int(self.k.shape[2])

    def append(self, k: torch.Tensor, v: torch.Tensor) -> int:
        """Add the newest positions' keys/values; returns how many positions were cached before."""
        past = self.length
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return past


class _HeadAttention(nn.Module, metaclass=ABCMeta):
    """What :class:`Attention` and :class:`CrossAttention` share: the head split, the input projections a subclass
    registers in :meth:`_input_projections`, the output ``proj`` and the optional per-head q/k norms.

    Modules are registered in ml-4m's order (input projections, ``proj``, norms) so the state_dict layout and the
    RNG draws of a seeded init match the official model.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self._input_projections(dim, qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.qk_norm = qk_norm
        if qk_norm:
            if norm_layer is None:
                raise ValueError("qk_norm needs a norm_layer")
            self.q_norm = norm_layer(self.head_dim)
            self.k_norm = norm_layer(self.head_dim)

    @abstractmethod
    def _input_projections(self, dim: int, qkv_bias: bool) -> None:
        """Register the query/key/value projections (fused as ml-4m names them)."""

    def _split(self, projected: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """(B, N, parts * D) -> ``parts`` tensors of (B, H, N, head_dim)."""
        B, N, _ = projected.shape
        return projected.reshape(B, N, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, shape: torch.Size
    ) -> torch.Tensor:
        """Attention of (B, H, N, head_dim) queries, merged back to ``shape`` (B, N, C) and projected out."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(shape))


class Attention(_HeadAttention):
    """Self-attention with a fused ``qkv`` projection (ml-4m's names), through ``scaled_dot_product_attention``."""

    def _input_projections(self, dim: int, qkv_bias: bool) -> None:
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, N, head_dim) queries, keys and values of ``x``, q/k normed when configured."""
        q, k, v = self._split(self.qkv(x), 3)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask``: bool (True = blocked) or an additive bias from :func:`attention_bias`."""
        q, k, v = self._qkv(x)
        return self._attend(q, k, v, attention_bias(mask, q.dtype), x.shape)

    def forward_cached(self, x: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Causal self-attention of ``x`` (the T newest positions) over the cached positions and itself.

        The keys/values of ``x`` are appended to ``cache``, so decoding token t costs O(t) instead of recomputing
        all t positions (O(t^2) per token). Same projections and norms as :meth:`forward`.
        """
        N = x.shape[1]
        q, k, v = self._qkv(x)
        past = cache.append(k, v)
        bias = None
        if N > 1:  # causal among the new positions; every cached one is visible
            rows = torch.arange(N, device=x.device).unsqueeze(1) + past
            blocked = torch.arange(past + N, device=x.device).unsqueeze(0) > rows
            bias = attention_bias(blocked.unsqueeze(0), q.dtype)
        return self._attend(q, cache.k, cache.v, bias, x.shape)


class CrossAttention(_HeadAttention):
    """Attention from decoder queries (``q``) to the encoder context (fused ``kv``), ml-4m's names."""

    def _input_projections(self, dim: int, qkv_bias: bool) -> None:
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        k, v = self.context_kv(context)
        return self.forward_kv(x, k, v, mask)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, M, head_dim) keys and values of the (normed) context: fixed while a sequence is decoded, so
        the incremental path computes them once instead of once per generated token."""
        k, v = self._split(self.kv(context), 2)
        if self.qk_norm:
            k = self.k_norm(k)
        return k, v

    def forward_kv(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`forward` with the context's keys/values from :meth:`context_kv`."""
        B, N, _ = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q = self.q_norm(q)
        return self._attend(q, k, v, attention_bias(mask, q.dtype), x.shape)


class Mlp(nn.Module):
    """GELU recipe: fc1 (D -> hidden), act, fc2."""

    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = nn.GELU, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GatedMlp(nn.Module):
    """SwiGLU recipe: ``fc2(act(fc1 x) * fc3 x)`` with hidden ``int(2 * hidden / 3)``; registered fc1, act, fc2, fc3."""

    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module] = nn.SiLU, bias: bool = False) -> None:
        super().__init__()
        hidden = int(2 * hidden / 3)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)) * self.fc3(x))


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


#: Builds an attention module of the given class with a block's head settings (see :class:`_PreNormBlock`).
_Heads = Callable[[type[_HeadAttention]], _HeadAttention]


class _PreNormBlock(nn.Module, metaclass=ABCMeta):
    """What :class:`Block` and :class:`DecoderBlock` share: ml-4m's hyperparameters, ``norm1``, the attention
    modules a subclass registers in :meth:`_attention`, drop path, ``norm2`` and the (gated) MLP.

    Registered in ml-4m's order, so the state_dict layout and the RNG draws of a seeded init match the official model.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        mlp_bias: bool = True,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = LayerNorm,
        gated_mlp: bool = False,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)

        def heads(kind: type[_HeadAttention]) -> _HeadAttention:
            return kind(dim, num_heads, qkv_bias, proj_bias, qk_norm, norm_layer)

        self._attention(dim, norm_layer, heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = (GatedMlp if gated_mlp else Mlp)(dim, hidden, act_layer=act_layer, bias=mlp_bias)

    @abstractmethod
    def _attention(self, dim: int, norm_layer: type[nn.Module], heads: _Heads) -> None:
        """Register the attention modules; ``heads(Attention)`` builds one with this block's settings."""


class Block(_PreNormBlock):
    """Pre-norm encoder block."""

    def _attention(self, dim: int, norm_layer: type[nn.Module], heads: _Heads) -> None:
        self.attn = heads(Attention)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DecoderBlock(_PreNormBlock):
    """Self-attention, then cross-attention to the encoder context, then MLP (all pre-norm)."""

    def _attention(self, dim: int, norm_layer: type[nn.Module], heads: _Heads) -> None:
        self.self_attn = heads(Attention)
        self.cross_attn = heads(CrossAttention)
        self.query_norm = norm_layer(dim)
        self.context_norm = norm_layer(dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        sa_mask: torch.Tensor | None = None,
        xa_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.drop_path(self.self_attn(self.norm1(x), sa_mask))
        x = x + self.drop_path(self.cross_attn(self.query_norm(x), self.context_norm(context), xa_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def init_cache(self, context: torch.Tensor) -> KVCache:
        """An empty self-attention cache plus this block's cross-attention keys/values of ``context``."""
        k, v = self.cross_attn.context_kv(self.context_norm(context))
        return KVCache(cross_k=k, cross_v=v)

    def forward_cached(self, x: torch.Tensor, cache: KVCache, xa_mask: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` for the newest positions ``x`` of a causally decoded sequence (inference only, so no
        drop path): self-attention over ``cache`` + ``x``, cross-attention to the cached context keys/values."""
        x = x + self.self_attn.forward_cached(self.norm1(x), cache)
        x = x + self.cross_attn.forward_kv(self.query_norm(x), cache.cross_k, cache.cross_v, xa_mask)
        return x + self.mlp(self.norm2(x))


def build_1d_sincos_posemb(max_len: int, embed_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(1, max_len, D): all sin components, then all cos components."""
    pos = torch.arange(max_len, dtype=torch.float32)
    dim = embed_dim // 2
    omega = 1.0 / temperature ** (torch.arange(dim, dtype=torch.float32) / dim)
    out = torch.einsum("n,d->nd", pos, omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).unsqueeze(0)


def build_2d_sincos_posemb(h: int, w: int, embed_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(1, h*w, D), copied from ml-4m including its w/h role swap (meshgrid over (w, h) with ij indexing)."""
    grid_w, grid_h = torch.meshgrid(
        torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij"
    )
    dim = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(dim, dtype=torch.float32) / dim)
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    emb = torch.cat([torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], dim=1)
    return emb.unsqueeze(0)


def xavier_uniform_fused(weight: torch.Tensor, parts: int) -> None:
    """MAE-style init of fused projections (qkv: 3 parts, kv: 2 parts)."""
    val = math.sqrt(6.0 / float(weight.shape[0] // parts + weight.shape[1]))
    nn.init.uniform_(weight, -val, val)
