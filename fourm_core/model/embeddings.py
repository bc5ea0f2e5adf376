"""Encoder and decoder embedding modules (``fourm/models/encoder_embeddings.py`` / ``decoder_embeddings.py``).

Which module a modality gets is decided by its ``type`` (from the spec kind) and ``pos`` (from the spec embedding),
never by its name. Every module fills the per-modality dict in place: ``x`` and ``emb`` (and ``ids`` for decoders).
"""

from __future__ import annotations

import torch
from torch import nn

from fourm_core.model.blocks import build_1d_sincos_posemb, build_2d_sincos_posemb

#: ml-4m builds every 1D sincos table with 512 rows and slices the batch dim, so the buffer is always (1, 512, D).
MAX_SINCOS_1D = 512

PIXELS, IMAGE_TOKENS, GLOBAL_TOKENS, SEQUENCE, SEQUENCE_EMBEDDING = (
    "pixels",
    "image_tokens",
    "global_tokens",
    "sequence",
    "sequence_embedding",
)
SINCOS_2D, SINCOS_1D, LEARNED = "2d", "1d", "learned"


def _grid_pos(module: nn.Module, info: dict, dim: int) -> None:
    """2D sincos buffer (after mod_emb) or learned Parameter (registered before mod_emb), (1, N, D)."""
    if info["pos"] == LEARNED:
        module.pos_emb = nn.Parameter(torch.empty(1, info["max_tokens"], dim).normal_(std=0.02))
        module.mod_emb = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
    else:
        grid = info["image_size"] // info["patch_size"]
        module.mod_emb = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
        module.register_buffer("pos_emb", build_2d_sincos_posemb(grid, grid, dim))


def _seq_pos(module: nn.Module, dim: int) -> None:
    module.mod_emb = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
    module.register_buffer("pos_emb", build_1d_sincos_posemb(MAX_SINCOS_1D, dim))


def _seq_positions(pos_emb: torch.Tensor, unused: torch.Tensor, max_length: int) -> torch.Tensor:
    """Position ids restart at 0 at the first used token; unused tokens and ids >= max_length get position 0."""
    ids = torch.cumsum((~unused).long(), dim=-1) - 1
    ids = ids.clamp(min=0).masked_fill(ids >= max_length, 0)
    pos = pos_emb[0][ids]
    return pos.masked_fill(unused.unsqueeze(-1), 0.0)


class ImageEncoderEmbedding(nn.Module):
    """Pixel patches, flattened ``b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)``, projected without bias."""

    def __init__(self, info: dict, dim: int) -> None:
        super().__init__()
        self.patch_size = info["patch_size"]
        _grid_pos(self, info, dim)
        self.proj = nn.Linear(info.get("num_channels", 3) * self.patch_size**2, dim, bias=False)

    def forward(self, d: dict) -> dict:
        x = d["tensor"]
        B, C, H, W = x.shape
        p = self.patch_size
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)
        d["x"] = self.proj(x)
        d["emb"] = (self.pos_emb + self.mod_emb).expand(B, -1, -1)
        return d


class ImageTokenEncoderEmbedding(nn.Module):
    def __init__(self, info: dict, dim: int) -> None:
        super().__init__()
        _grid_pos(self, info, dim)
        self.token_emb = nn.Embedding(info["vocab_size"], dim)

    def forward(self, d: dict) -> dict:
        ids = d["tensor"].reshape(d["tensor"].shape[0], -1)
        d["x"] = self.token_emb(ids)
        d["emb"] = (self.pos_emb + self.mod_emb).expand(ids.shape[0], -1, -1)
        return d


class SequenceEncoderEmbedding(nn.Module):
    def __init__(self, info: dict, dim: int) -> None:
        super().__init__()
        self.max_length = info["max_tokens"]
        _seq_pos(self, dim)
        self.token_emb = nn.Embedding(info["vocab_size"], dim, padding_idx=0)

    def forward(self, d: dict) -> dict:
        d["x"] = self.token_emb(d["tensor"])
        d["emb"] = _seq_positions(self.pos_emb, d["input_mask"], self.max_length) + self.mod_emb
        return d


class SequenceEmbEncoderEmbedding(nn.Module):
    """Continuous vectors (B, L, feature_dim) projected with a biased Linear."""

    def __init__(self, info: dict, dim: int) -> None:
        super().__init__()
        self.max_length = info["max_tokens"]
        _seq_pos(self, dim)
        self.emb_proj = nn.Linear(info["feature_dim"], dim, bias=True)

    def forward(self, d: dict) -> dict:
        d["x"] = self.emb_proj(d["tensor"])
        d["emb"] = _seq_positions(self.pos_emb, d["input_mask"], self.max_length) + self.mod_emb
        return d


class ImageTokenDecoderEmbedding(nn.Module):
    def __init__(self, info: dict, dim: int, share_embedding: bool = False) -> None:
        super().__init__()
        _grid_pos(self, info, dim)
        self.token_emb = nn.Embedding(info["vocab_size"], dim)
        self.to_logits = nn.Linear(dim, info["vocab_size"], bias=False)
        if share_embedding:
            self.to_logits.weight = self.token_emb.weight

    def forward_embed(self, d: dict) -> dict:
        ids = d["tensor"].reshape(d["tensor"].shape[0], -1)
        d["x"] = self.token_emb(ids)
        d["emb"] = (self.pos_emb + self.mod_emb).expand(ids.shape[0], -1, -1)
        d["ids"] = ids
        return d

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_logits(x)


class SequenceDecoderEmbedding(nn.Module):
    def __init__(self, info: dict, dim: int, share_embedding: bool = False) -> None:
        super().__init__()
        self.max_length = info["max_tokens"]
        _seq_pos(self, dim)
        self.token_emb = nn.Embedding(info["vocab_size"], dim, padding_idx=0)
        self.to_logits = nn.Linear(dim, info["vocab_size"], bias=False)
        if share_embedding:
            self.to_logits.weight = self.token_emb.weight

    def forward_embed(self, d: dict) -> dict:
        ids = d["tensor"]
        d["x"] = self.token_emb(ids)
        d["emb"] = _seq_positions(self.pos_emb, d["target_mask"], self.max_length) + self.mod_emb
        d["ids"] = ids
        return d

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_logits(x)


def is_sequence(info: dict) -> bool:
    """Sequences (and sequence embeddings) are decoded with teacher forcing; grids and global tokens in parallel."""
    return info["type"] in (SEQUENCE, SEQUENCE_EMBEDDING)


def build_encoder_embedding(info: dict, dim: int) -> nn.Module:
    kind = info["type"]
    if kind == PIXELS:
        return ImageEncoderEmbedding(info, dim)
    if kind in (IMAGE_TOKENS, GLOBAL_TOKENS):
        return ImageTokenEncoderEmbedding(info, dim)
    if kind == SEQUENCE:
        return SequenceEncoderEmbedding(info, dim)
    if kind == SEQUENCE_EMBEDDING:
        return SequenceEmbEncoderEmbedding(info, dim)
    raise ValueError(f"no encoder embedding for type {kind!r}")


def build_decoder_embedding(info: dict, dim: int, share_embedding: bool = False) -> nn.Module:
    kind = info["type"]
    if kind in (IMAGE_TOKENS, GLOBAL_TOKENS):
        return ImageTokenDecoderEmbedding(info, dim, share_embedding)
    if kind == SEQUENCE:
        return SequenceDecoderEmbedding(info, dim, share_embedding)
    raise ValueError(f"type {kind!r} cannot be a target (no output head)")
