"""ml-4m's two quantizers, inference path, with the state-dict names the published tokenizers carry.

``VectorQuantize`` (ml-4m's ``quantize_lucid``, derived from lucidrains' vector-quantize-pytorch): the codebook is an
EMA **buffer** ``_codebook.embed`` (K, d) beside ``_codebook.initted`` (1,), ``_codebook.cluster_size`` (K,) and, for
the Euclidean codebook only, ``_codebook.embed_avg`` (K, d); with several heads, ``project_in`` / ``project_out``
linears. The cosine codebook (``norm_codes=True``, every released config) l2-normalises the latents and the codes to
pick the nearest code but returns the *stored* code ``embed[idx]``, not its normalised copy.

``Memcodes`` (NWT-style): ``codes`` (heads, K, d/heads), ``to_k.weight`` and ``to_v.weight`` (heads, d/h, d/h); each
head attends its query to the keys of its codes and returns the value of the best one, so a (B, C, 1, 1) input gives
``heads`` tokens of shape (B, heads, 1, 1).

What is not here: the EMA codebook update, dead-code replacement, k-means init and distributed codebook sync (the
training side of ml-4m's quantizer), and Memcodes' Gumbel sampling. In ``train()`` mode both quantizers still pick
codes by argmax and never touch their buffers; the lucid one then passes gradients straight through
(``x + (q - x).detach()``) and returns the commitment loss, so a decoder can be fine-tuned on a frozen codebook.
vector-quantize-pytorch (a fourm dependency) is not used here: its current buffer names and shapes
(``embed`` of (heads, K, d), ``embed_avg`` on cosine codebooks) differ from ml-4m's fork.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import EinMix
from torch import nn

__all__ = ["CosineSimCodebook", "EuclideanCodebook", "Memcodes", "VectorQuantize"]


def _l2norm(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, p=2, dim=-1)


class _Codebook(nn.Module):
    """The buffers both codebooks keep (names as in ml-4m); values come from the checkpoint."""

    initted: torch.Tensor
    cluster_size: torch.Tensor
    embed: torch.Tensor

    def __init__(self, dim: int, codebook_size: int, euclidean: bool) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        embed = _l2norm(torch.randn(codebook_size, dim))
        if euclidean:
            self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("embed", embed)

    def scores(self, flat: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d) latents -> (the chosen stored codes (..., d), their indices (...))."""
        x = x.float()
        flat = rearrange(x, "... d -> (...) d")
        idx = self.scores(flat).argmax(dim=-1).view(*x.shape[:-1])
        return F.embedding(idx, self.embed), idx


class EuclideanCodebook(_Codebook):
    """Nearest code by squared Euclidean distance (computed in ml-4m's expanded order)."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__(dim, codebook_size, euclidean=True)

    def scores(self, flat: torch.Tensor) -> torch.Tensor:
        embed = self.embed.t()
        return -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True))


class CosineSimCodebook(_Codebook):
    """Nearest code by cosine similarity of the l2-normalised latent and codes."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__(dim, codebook_size, euclidean=False)

    def scores(self, flat: torch.Tensor) -> torch.Tensor:
        return _l2norm(flat) @ _l2norm(self.embed).t()


class VectorQuantize(nn.Module):
    """ml-4m's ``VectorQuantizerLucid`` on (B, C, H, W) maps: returns ``(quant, loss, tokens)`` with tokens (B, H, W),
    or (B, heads, H, W) with several heads. Constructor keywords are ml-4m's; training-only ones are accepted and
    ignored (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        heads: int = 1,
        use_cosine_sim: bool = False,
        commitment_weight: float = 1.0,
        norm_latents: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.codebook_size = codebook_size
        codebook_dim = codebook_dim or dim
        inner = codebook_dim * heads
        self.project_in: nn.Module = nn.Linear(dim, inner) if inner != dim else nn.Identity()
        self.project_out: nn.Module = nn.Linear(inner, dim) if inner != dim else nn.Identity()
        self.commitment_weight = commitment_weight
        self.norm_latents = norm_latents
        codebook = CosineSimCodebook if use_cosine_sim else EuclideanCodebook
        self._codebook = codebook(codebook_dim, codebook_size)

    @property
    def codebook(self) -> torch.Tensor:
        return self._codebook.embed

    def indices_to_embedding(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H, W), or (B, heads, H, W), -> the quantized map (B, C, H, W) ``encode`` returns.

        With one head this is ml-4m's ``F.embedding`` lookup; ml-4m has no multi-head path here (its rearrange fails),
        so the heads' codes are concatenated and projected out as its ``forward`` does."""
        if self.heads == 1:
            return rearrange(F.embedding(indices, self.codebook), "b h w c -> b c h w")
        codes = rearrange(F.embedding(indices, self.codebook), "b k h w c -> b h w (k c)")
        return rearrange(self.project_out(codes), "b h w c -> b c h w")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        x = self.project_in(rearrange(x, "b c h w -> b (h w) c"))
        if self.heads > 1:
            x = rearrange(x, "b n (h d) -> (b h) n d", h=self.heads)
        if self.norm_latents:
            x = _l2norm(x)
        quant, idx = self._codebook(x)
        loss = torch.zeros(1, device=x.device)
        if self.training:
            quant = x + (quant - x).detach()
            if self.commitment_weight > 0:
                loss = loss + F.mse_loss(quant.detach(), x) * self.commitment_weight
        if self.heads > 1:
            quant = rearrange(quant, "(b h) n d -> b n (h d)", h=self.heads)
            idx = rearrange(idx, "(b k) (h w) -> b k h w", k=self.heads, h=height, w=width)
        else:
            idx = rearrange(idx, "b (h w) -> b h w", h=height, w=width)
        quant = rearrange(self.project_out(quant), "b (h w) c -> b c h w", h=height, w=width)
        return quant, loss, idx


class Memcodes(nn.Module):
    """ml-4m's ``Memcodes`` on (B, C, H, W) maps: each of ``heads`` heads picks a code by argmax of query-key
    attention and returns its value. Tokens are (B, heads, H, W) ((B, H, W) with one head)."""

    def __init__(self, dim: int, codebook_size: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Memcodes: latent width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.codebook_size = dim, heads, codebook_size
        d = dim // heads
        self.scale = d**-0.5
        self.codes = nn.Parameter(torch.randn(heads, codebook_size, d))
        # einops' EinMix is ml-4m's layer here (weight (h, d, c), no bias), so names and numerics match
        self.to_k = EinMix("h n d -> h n c", weight_shape="h d c", h=heads, d=d, c=d)
        self.to_v = EinMix("h n d -> h n c", weight_shape="h d c", h=heads, d=d, c=d)

    def indices_to_embedding(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens (B, heads, H, W) (or (B, H, W) with one head) -> the values as a (B, dim, H, W) map.

        ml-4m's version only handles H = W = 1 (it squeezes a spatial axis); this one gives the same result there and
        the per-pixel lookup elsewhere."""
        if indices.ndim == 3:
            indices = indices.unsqueeze(1)
        values = self.to_v(self.codes)  # (heads, K, d)
        picked = torch.stack([F.embedding(indices[:, k], values[k]) for k in range(self.heads)], dim=1)
        return rearrange(picked, "b k h w d -> b (k d) h w")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = x.shape[-2:]
        # the same rearranges as ml-4m, so einsum sees the same strides and sums in the same order
        q = rearrange(rearrange(x, "b c h w -> b (h w) c"), "b n (k d) -> b k n d", k=self.heads) * self.scale
        k, v = self.to_k(self.codes), self.to_v(self.codes)
        logits = torch.einsum("b h i d, h j d -> b h i j", q, k)
        idx = logits.argmax(dim=-1)
        attn = F.one_hot(idx, num_classes=self.codebook_size).float()
        out = torch.einsum("b h i j, h j d -> b h i d", attn, v)
        out = rearrange(out, "b k (h w) d -> b (k d) h w", h=height, w=width)
        idx = rearrange(idx, "b k (h w) -> b k h w", h=height, w=width)
        if self.heads == 1:
            idx = idx.squeeze(1)
        return out, torch.zeros(1, device=x.device), idx
