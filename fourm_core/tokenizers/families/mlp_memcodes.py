"""The ``mlp_memcodes`` tokenizer family: a bottleneck-MLP encoder and decoder around a Memcodes multi-head quantiser,
one token per head, for vectors (global embeddings, pose parameters)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fourm_core.spec import ModalityKind, ModalitySpec
from fourm_core.tokenizers.config import TokenizerModelConfig
from fourm_core.tokenizers.families import TokenizerFamily

__all__ = ["FAMILY", "MLPMemcodes", "Memcodes"]


class Memcodes(nn.Module):
    """Multi-head attention-to-codebook quantiser (Memcodes, from NWT), as ml-4m uses for global and pose tokens.

    Written here because no maintained package ships it: lucidrains' ``nwt-pytorch`` (the reference, last released
    2022) is unmaintained and pins an old einops API; ``vector-quantize-pytorch`` has no Memcodes. Each head attends
    from its slice of the input to the head's code keys; training picks a code with straight-through hard
    Gumbel-softmax, inference with argmax; the output is the chosen codes' values. Tokens = heads.
    """

    def __init__(self, dim: int, codebook_size: int, heads: int, temperature: float = 1.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Memcodes: dim {dim} must be divisible by heads {heads}")
        self.heads, self.codebook_size, self.temperature = heads, codebook_size, temperature
        d = dim // heads
        self.scale = d**-0.5
        self.codes = nn.Parameter(torch.randn(heads, codebook_size, d))
        self.to_k = nn.Parameter(torch.randn(heads, d, d) / math.sqrt(d))
        self.to_v = nn.Parameter(torch.randn(heads, d, d) / math.sqrt(d))

    def values(self) -> torch.Tensor:
        return torch.einsum("hnd,hdc->hnc", self.codes, self.to_v)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = rearrange(x, "b (h d) -> b h d", h=self.heads) * self.scale
        keys = torch.einsum("hnd,hdc->hnc", self.codes, self.to_k)
        logits = torch.einsum("bhd,hnd->bhn", q, keys)
        if self.training:
            attn = F.gumbel_softmax(logits, tau=self.temperature, dim=-1, hard=True)
            ids = attn.argmax(-1)
        else:
            ids = logits.argmax(-1)
            attn = F.one_hot(ids, self.codebook_size).to(x.dtype)
        out = torch.einsum("bhn,hnd->bhd", attn, self.values())
        return rearrange(out, "b h d -> b (h d)"), ids

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        values = self.values()  # (h, n, d)
        out = torch.stack([values[h][ids[:, h]] for h in range(self.heads)], 1)
        return rearrange(out, "b h d -> b (h d)")


class _ResidualMLP(nn.Module):
    """ml-4m's BottleneckMLP block: pre-LayerNorm, Linear(w -> 4w), GELU, Linear(4w -> w), residual."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class MLPMemcodes(nn.Module):
    """Bottleneck-MLP encoder -> Memcodes (one token per head) -> bottleneck-MLP decoder, for vectors (global
    embeddings, pose parameters)."""

    def __init__(self, cfg: TokenizerModelConfig, out_channels: int) -> None:
        super().__init__()
        w = cfg.mlp_width
        w = w + (-w) % cfg.n_tokens  # divisible by the number of heads
        self.encoder = nn.Sequential(
            nn.Linear(cfg.channels, w), *[_ResidualMLP(w) for _ in range(cfg.mlp_blocks)], nn.LayerNorm(w)
        )
        self.quantizer = Memcodes(w, cfg.codebook_size, cfg.n_tokens)
        self.decoder = nn.Sequential(
            *[_ResidualMLP(w) for _ in range(cfg.mlp_blocks)], nn.LayerNorm(w), nn.Linear(w, out_channels)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quant, ids = self.quantizer(self.encoder(x))
        return quant, ids, x.new_zeros(())

    def decode_quant(self, quant: torch.Tensor) -> torch.Tensor:
        return self.decoder(quant)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(ids))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quant, ids, loss = self.encode(x)
        return self.decoder(quant), ids, loss


def _configure(spec: ModalitySpec, preset: str, common: dict[str, Any]) -> TokenizerModelConfig:
    """Global tokens take the layout's vocabulary and token count; per-item tokens (poses) the declared ones."""
    tok, layout = spec.tokenizer, spec.layout(preset)
    assert tok is not None
    if spec.kind == ModalityKind.GLOBAL_TOKENS:
        codebook, n_tokens = layout.vocab_size, layout.max_tokens
    else:
        codebook, n_tokens = tok.codebook.get(preset), tok.tokens_per_item
    if not codebook or not n_tokens:
        raise ValueError(f"modality {spec.name!r}: mlp_memcodes needs a codebook size and a token count")
    return TokenizerModelConfig(**common, codebook_size=codebook, n_tokens=n_tokens)


FAMILY = TokenizerFamily(
    name="mlp_memcodes",
    description="bottleneck-MLP encoder and decoder around a Memcodes multi-head quantiser: one token per head",
    configure=_configure,
    network=MLPMemcodes,
)
