"""Tokenizer networks: ViT VQ-VAE (image-like data, masks), diffusion decoder, bottleneck MLP + Memcodes.

Built from timm blocks, ``vector-quantize-pytorch``'s cosine-similarity EMA quantiser (with dead-code replacement and
k-means init) and diffusers' schedulers and timestep embeddings. Every network has the same three entry points:

- ``encode(x) -> (quantised latents, token ids, auxiliary loss)``
- ``decode_ids(ids) -> output`` (decoder output in the transform's space: values, logits)
- ``forward(x) -> (output, ids, auxiliary loss)`` for training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from fourm_core.tokenizers.config import TokenizerModelConfig

__all__ = ["DiffusionDecoder", "Memcodes", "MLPMemcodes", "ViTVQVAE", "build_network"]


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


class DiffusionDecoder(nn.Module):
    """A small ViT denoiser (U-ViT style, one token per patch) that predicts the clean image from a noisy one,
    conditioned per patch on the quantised latents and on the plain decoder's reconstruction.

    The prediction is a residual on top of the plain reconstruction (the last layer starts at zero), so sampling
    starts no worse than the plain decoder and training refines detail the plain decoder blurs. ml-4m conditions a
    patched U-Net on the latents alone; conditioning on the plain decoder too is what makes a decoder this small
    useful after two CPU minutes. Trained with diffusers' DDPM noise schedule (x0 prediction), sampled with DDIM.
    """

    def __init__(self, cfg: TokenizerModelConfig, channels: int) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        assert cfg.diffusion is not None
        dcfg = cfg.diffusion
        self.cfg, self.channels = cfg, channels
        p, d = cfg.patch_size, dcfg.dim
        self.inp = nn.Linear(2 * p * p * channels + cfg.latent_dim, d)
        self.time_proj = Timesteps(d, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_emb = TimestepEmbedding(d, d)
        pos = build_sincos2d_pos_embed([cfg.grid, cfg.grid], d).reshape(1, cfg.grid * cfg.grid, d)
        self.register_buffer("pos", pos, persistent=False)
        self.blocks = _blocks(d, dcfg.depth, max(1, d // 32))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, p * p * channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        return rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, quant: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
        g, p = self.cfg.grid, self.cfg.patch_size
        h = self.inp(torch.cat([self._patches(noisy), self._patches(plain), quant], -1)) + self.pos
        h = h + self.time_emb(self.time_proj(t).to(h.dtype))[:, None]
        residual = self.out(self.norm(self.blocks(h)))
        return plain + rearrange(residual, "b (h w) (p q c) -> b c (h p) (w q)", h=g, w=g, p=p, q=p)


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


def build_network(cfg: TokenizerModelConfig, out_channels: int) -> nn.Module:
    """The network of ``cfg.family`` (``divae`` is a ViT VQ-VAE whose diffusion decoder is built separately)."""
    if cfg.family in ("vit_vqvae", "divae", "mask_vqvae"):
        return ViTVQVAE(cfg, out_channels)
    if cfg.family == "mlp_memcodes":
        return MLPMemcodes(cfg, out_channels)
    raise ValueError(f"unknown tokenizer family {cfg.family!r}")
