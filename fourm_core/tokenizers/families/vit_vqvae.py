"""The ``vit_vqvae`` tokenizer family: ViT encoder, cosine EMA vector quantiser, ViT decoder, for image-like data
(pixel maps, class maps, feature maps on a token grid).

Built from timm blocks and ``vector-quantize-pytorch``'s cosine-similarity EMA quantiser (with dead-code replacement
and k-means init). Every tokenizer network has the same three entry points:

- ``encode(x) -> (quantised latents, token ids, auxiliary loss)``
- ``decode_ids(ids) -> output`` (decoder output in the transform's space: values, logits)
- ``forward(x) -> (output, ids, auxiliary loss)`` for training.

The ``divae`` and ``mask_vqvae`` families reuse :class:`ViTVQVAE` and :func:`configure_grid`.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from fourm_core.spec import ModalityKind, ModalitySpec
from fourm_core.tokenizers.config import DiffusionConfig, TokenizerModelConfig
from fourm_core.tokenizers.families import TokenizerFamily

__all__ = ["FAMILY", "ViTVQVAE", "configure_grid"]


def _blocks(dim: int, depth: int, heads: int) -> nn.Sequential:
    return nn.Sequential(*[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])


class ViTVQVAE(nn.Module):
    """ViT encoder -> linear to a small latent -> cosine EMA vector quantiser -> ViT decoder -> pixels per patch.

    Class maps enter through a class embedding (ml-4m's ``cls_emb``); the output has ``out_channels`` per pixel
    (logits for class maps and masks). Positions use fixed 2D sin-cos embeddings, as ml-4m's ViT tokenizers do.
    """

    def __init__(self, cfg: TokenizerModelConfig, out_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_channels = out_channels
        p, d = cfg.patch_size, cfg.dim
        in_ch = cfg.channels
        self.cls_emb = None
        if cfg.num_classes:
            self.cls_emb = nn.Embedding(cfg.num_classes, 16)
            in_ch = 16
        self.patch = nn.Conv2d(in_ch, d, p, stride=p)
        pos = build_sincos2d_pos_embed([cfg.grid, cfg.grid], d).reshape(1, cfg.grid * cfg.grid, d)
        self.register_buffer("pos", pos, persistent=False)
        self.encoder = _blocks(d, cfg.enc_depth, cfg.heads)
        self.enc_norm = nn.LayerNorm(d)
        self.quant_proj = nn.Linear(d, cfg.latent_dim)
        self.quantizer = VectorQuantize(
            dim=cfg.latent_dim,
            codebook_size=cfg.codebook_size,
            use_cosine_sim=True,
            decay=cfg.ema_decay,
            threshold_ema_dead_code=cfg.dead_code_threshold,
            commitment_weight=cfg.commitment_weight,
            kmeans_init=True,
            kmeans_iters=10,
        )
        self.post_quant = nn.Linear(cfg.latent_dim, d)
        self.decoder = _blocks(d, cfg.dec_depth, cfg.heads)
        self.dec_norm = nn.LayerNorm(d)
        # class maps: predict a small embedding per pixel, then class logits by a per-pixel linear layer; a direct
        # head would emit p*p*num_classes values per token, most of the step's time for 134 classes
        self.class_head = nn.Linear(16, out_channels) if cfg.num_classes else None
        self.head = nn.Linear(d, p * p * (16 if self.class_head is not None else out_channels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder tokens before quantisation, (B, L, latent)."""
        if self.cls_emb is not None:
            x = self.cls_emb(x.long()).permute(0, 3, 1, 2)
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.quant_proj(self.enc_norm(self.encoder(x)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quant, ids, loss = self.quantizer(self.features(x))
        return quant, ids, loss

    def decode_quant(self, quant: torch.Tensor) -> torch.Tensor:
        g, p = self.cfg.grid, self.cfg.patch_size
        x = self.dec_norm(self.decoder(self.post_quant(quant) + self.pos))
        if self.class_head is not None:
            # logits are made channel-last (contiguous) and returned as a channel-first view: no copy of the
            # largest tensor of the step
            emb = rearrange(self.head(x), "b (h w) (p q c) -> b (h p) (w q) c", h=g, w=g, p=p, q=p)
            return self.class_head(emb).permute(0, 3, 1, 2)
        return rearrange(self.head(x), "b (h w) (p q c) -> b c (h p) (w q)", h=g, w=g, p=p, q=p)

    def ids_to_quant(self, ids: torch.Tensor) -> torch.Tensor:
        return self.quantizer.get_output_from_indices(ids)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decode_quant(self.ids_to_quant(ids))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quant, ids, loss = self.encode(x)
        return self.decode_quant(quant), ids, loss


def configure_grid(
    spec: ModalitySpec, preset: str, common: dict[str, Any], diffusion: DiffusionConfig | None = None
) -> TokenizerModelConfig:
    """A grid family's configuration: one token per patch of the preset layout's grid, the layout's vocabulary."""
    assert spec.tokenizer is not None
    layout = spec.layout(preset)
    if spec.kind != ModalityKind.IMAGE_TOKENS or layout.grid is None:
        raise ValueError(f"modality {spec.name!r}: family {spec.tokenizer.family} needs an image-token grid layout")
    # feature maps are already one vector per token position: a 1x1 "patch" over the grid (ml-4m's patch_proj=False);
    # pixel maps are cut into the layout's patches
    features = spec.tokenizer.transform == "features"
    return TokenizerModelConfig(
        **common,
        input_size=layout.grid if features else layout.image_size,
        patch_size=1 if features else layout.patch_size,
        codebook_size=layout.vocab_size,
        n_tokens=layout.grid**2,
        diffusion=diffusion,
    )


FAMILY = TokenizerFamily(
    name="vit_vqvae",
    description="ViT encoder and decoder around a cosine EMA vector quantiser: one token per patch",
    configure=configure_grid,
    network=ViTVQVAE,
)
