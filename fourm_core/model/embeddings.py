"""Encoder and decoder embedding modules (``fourm/models/encoder_embeddings.py`` / ``decoder_embeddings.py``).

Which module a key gets is decided by its :class:`~fourm_core.keys.KeyInfo` (kind and embedding), never by its
name. Every module fills the per-modality dict in place: ``x`` and ``emb`` (and ``ids`` for decoders).
"""

from __future__ import annotations

import torch
from torch import nn

from fourm_core.keys import KeyInfo
from fourm_core.model.blocks import build_1d_sincos_posemb, build_2d_sincos_posemb
from fourm_core.spec import Embedding, ModalityKind

#: ml-4m builds every 1D sincos table with 512 rows and slices the batch dim, so the buffer is always (1, 512, D).
MAX_SINCOS_1D = 512


def _grid_pos(module: nn.Module, info: KeyInfo, dim: int) -> None:
    """2D sincos buffer (after mod_emb) or learned Parameter (registered before mod_emb), (1, N, D)."""
    if info.embedding == Embedding.LEARNED:
        module.pos_emb = nn.Parameter(torch.empty(1, info.max_tokens, dim).normal_(std=0.02))
        module.mod_emb = nn.Parameter(torch.empty(1, 1, dim).normal_(std=0.02))
    else:
        grid = info.grid
        if grid is None:
            raise ValueError(f"{info.key}: a 2D sin-cos position embedding needs image_size and patch_size")
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

    def __init__(self, info: KeyInfo, dim: int) -> None:
        super().__init__()
        self.patch_size = int(info.patch_size or 0)
        _grid_pos(self, info, dim)
        self.proj = nn.Linear(info.num_channels * self.patch_size**2, dim, bias=False)

    def forward(self, d: dict) -> dict:
        x = d["tensor"]
        B, C, H, W = x.shape
        p = self.patch_size
        x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)
        d["x"] = self.proj(x)
        d["emb"] = (self.pos_emb + self.mod_emb).expand(B, -1, -1)
        return d


class ImageTokenEncoderEmbedding(nn.Module):
    def __init__(self, info: KeyInfo, dim: int) -> None:
        super().__init__()
        _grid_pos(self, info, dim)
        self.token_emb = nn.Embedding(_vocab(info), dim)

    def forward(self, d: dict) -> dict:
        ids = d["tensor"].reshape(d["tensor"].shape[0], -1)
        d["x"] = self.token_emb(ids)
        d["emb"] = (self.pos_emb + self.mod_emb).expand(ids.shape[0], -1, -1)
        return d


class SequenceEncoderEmbedding(nn.Module):
    def __init__(self, info: KeyInfo, dim: int) -> None:
        super().__init__()
        self.max_length = info.max_tokens
        _seq_pos(self, dim)
        self.token_emb = nn.Embedding(_vocab(info), dim, padding_idx=0)

    def forward(self, d: dict) -> dict:
        d["x"] = self.token_emb(d["tensor"])
        # encoder positions run over the whole 512-long buffer, as ml-4m's do: only the decoder clamps at max_length
        d["emb"] = _seq_positions(self.pos_emb, d["input_mask"], self.pos_emb.shape[1]) + self.mod_emb
        return d


class SequenceEmbEncoderEmbedding(nn.Module):
    """Continuous vectors (B, L, feature_dim) projected with a biased Linear."""

    def __init__(self, info: KeyInfo, dim: int) -> None:
        super().__init__()
        self.max_length = info.max_tokens
        _seq_pos(self, dim)
        self.emb_proj = nn.Linear(_feature_dim(info), dim, bias=True)

    def forward(self, d: dict) -> dict:
        d["x"] = self.emb_proj(d["tensor"])
        d["emb"] = _seq_positions(self.pos_emb, d["input_mask"], self.pos_emb.shape[1]) + self.mod_emb
        return d


class ImageTokenDecoderEmbedding(nn.Module):
    def __init__(self, info: KeyInfo, dim: int, share_embedding: bool = False) -> None:
        super().__init__()
        _grid_pos(self, info, dim)
        self.token_emb = nn.Embedding(_vocab(info), dim)
        self.to_logits = nn.Linear(dim, _vocab(info), bias=False)
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
    def __init__(self, info: KeyInfo, dim: int, share_embedding: bool = False) -> None:
        super().__init__()
        self.max_length = info.decoder_positions or info.max_tokens
        _seq_pos(self, dim)
        self.token_emb = nn.Embedding(_vocab(info), dim, padding_idx=0)
        self.to_logits = nn.Linear(dim, _vocab(info), bias=False)
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


def _vocab(info: KeyInfo) -> int:
    if info.vocab_size is None:
        raise ValueError(f"{info.key}: a {info.kind.value} key needs vocab_size")
    return info.vocab_size


def _feature_dim(info: KeyInfo) -> int:
    if info.feature_dim is None:
        raise ValueError(f"{info.key}: a {info.kind.value} key needs feature_dim")
    return info.feature_dim


def build_encoder_embedding(info: KeyInfo, dim: int) -> nn.Module:
    """The encoder embedding of ``info``'s kind."""
    if info.kind == ModalityKind.PIXELS:
        return ImageEncoderEmbedding(info, dim)
    if info.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS):
        return ImageTokenEncoderEmbedding(info, dim)
    if info.kind == ModalityKind.SEQUENCE:
        return SequenceEncoderEmbedding(info, dim)
    return SequenceEmbEncoderEmbedding(info, dim)


def build_decoder_embedding(info: KeyInfo, dim: int, share_embedding: bool = False) -> nn.Module:
    """The decoder embedding (with its output head) of ``info``'s kind; pixels and embeddings cannot be targets."""
    if info.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS):
        return ImageTokenDecoderEmbedding(info, dim, share_embedding)
    if info.kind == ModalityKind.SEQUENCE:
        return SequenceDecoderEmbedding(info, dim, share_embedding)
    raise ValueError(f"{info.key}: kind {info.kind.value!r} cannot be a target (no output head)")
