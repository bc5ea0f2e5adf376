"""The ``divae`` tokenizer family: a ViT VQ-VAE whose tokens are also decoded by a small diffusion decoder (DDPM
training, DDIM sampling with diffusers' schedulers and timestep embeddings), as ml-4m's DiVAE tokenizers."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from timm.layers import build_sincos2d_pos_embed
from torch import nn

from fourm_core.spec import ModalitySpec
from fourm_core.tokenizers.config import DiffusionConfig, TokenizerModelConfig
from fourm_core.tokenizers.families import TokenizerFamily
from fourm_core.tokenizers.families.vit_vqvae import ViTVQVAE, _blocks, configure_grid

__all__ = ["FAMILY", "DiffusionDecoder"]


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


def _configure(spec: ModalitySpec, preset: str, common: dict[str, Any]) -> TokenizerModelConfig:
    return configure_grid(spec, preset, common, DiffusionConfig())


FAMILY = TokenizerFamily(
    name="divae",
    description="a ViT VQ-VAE plus a diffusion decoder that refines its reconstruction (decode(sampler='diffusion'))",
    configure=_configure,
    network=ViTVQVAE,
    decoder=DiffusionDecoder,
)
