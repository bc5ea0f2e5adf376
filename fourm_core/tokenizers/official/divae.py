"""ml-4m's diffusion tokenizer ``DiVAE``: the ``VQ`` encoder + quantizer and a diffusion decoder conditioned on the
quantised latent (https://arxiv.org/abs/2206.00386), state-dict compatible with the published
``EPFL-VILAB/4M_tokenizers_{rgb_16k,depth_8k,normal_8k}_224-448`` and ``edge_8k_224-512`` weights.

The decoder is ml-4m's patched U-Net (``dec_type: unet_patched``, :mod:`.unet`) or a UViT (``uvit_*``,
:mod:`.uvit`); the sampler is ml-4m's (:mod:`.diffusion`). Constructor keywords are ml-4m's, so a hub ``config.json``
builds it as is; ``fourm_size_overrides["decoder"]`` (a fourm extension used only by the reduced CI fixtures)
replaces the named decoder's sizes, e.g. ``{"model_channels": 32, "num_res_blocks": 1}`` for the U-Net or
``{"block_out_channels": [32, 64], "mid_layers": 1, "mid_dim": 32, "mid_num_heads": 2}`` for the UViT.

Inputs are what ml-4m's DiVAE transforms produce: RGB and edges in [-1, 1], depth standardised, normals normalised
with mean and std 0.5 (see the plugins' official assets). Differences from ml-4m, none of which changes a number:
an unknown ``scheduler`` name is refused (ml-4m silently takes DDIM), and ``decode_quant(scheduler=...)`` also takes
a scheduler name (``"ddpm"`` / ``"ddim"``), built with this tokenizer's diffusion settings.
"""

from __future__ import annotations

from typing import Any

import diffusers
import torch
from einops import rearrange, repeat
from torch import nn

from fourm_core.tokenizers.official.diffusion import make_scheduler, sample, scheduler_class
from fourm_core.tokenizers.official.unet import build_unet
from fourm_core.tokenizers.official.uvit import build_uvit
from fourm_core.tokenizers.official.vq import VQ, OfficialConfigError

__all__ = ["DiVAE"]


class DiVAE(VQ):
    """``VQ`` + diffusion decoder (``decoder.*``). ``tokenize`` / ``encode`` are the base class's; ``decode_tokens``
    and ``decode_quant`` sample from Gaussian noise (``timesteps=`` steps, ``generator=``, ``image_size=``,
    ``scheduler=``); ``forward(input_clean=, input_noised=, timesteps=)`` is the training forward, returning the
    decoder's prediction (``prediction_type``: ``sample``, ``epsilon`` or ``v_prediction``) and the code loss.

    The scheduler keywords are ml-4m's: ``beta_schedule`` (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``,
    ``shifted_cosine:<s>``), ``prediction_type``, ``zero_terminal_snr``, ``thresholding`` (dynamic, a clip to
    [-1, 1] with the default ratio and maximum), ``clip_sample``; ``scheduler`` picks DDPM (default) or DDIM.
    """

    def __init__(
        self,
        dec_type: str = "unet_patched",
        num_train_timesteps: int = 1000,
        cls_free_guidance_dropout: float = 0.0,
        masked_cfg: bool = False,
        masked_cfg_low: int = 0,
        masked_cfg_high: int | None = None,
        scheduler: str = "ddpm",
        beta_schedule: str = "squaredcos_cap_v2",
        prediction_type: str = "v_prediction",
        clip_sample: bool = False,
        thresholding: bool = True,
        conditioning: str = "concat",
        dec_transformer_dropout: float = 0.2,
        zero_terminal_snr: bool = True,
        image_size_dec: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dec_type = dec_type
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.thresholding = thresholding
        self.zero_terminal_snr = zero_terminal_snr
        self.cls_free_guidance_dropout = cls_free_guidance_dropout
        self.masked_cfg, self.masked_cfg_low, self.masked_cfg_high = masked_cfg, masked_cfg_low, masked_cfg_high

        size = image_size_dec or self.image_size
        overrides = self.size_overrides.get("decoder")
        try:
            if "unet_" in dec_type:
                self.decoder: nn.Module = build_unet(
                    dec_type,
                    in_channels=self.n_channels,
                    out_channels=self.n_channels,
                    cond_channels=self.latent_dim,
                    image_size=size,
                    overrides=overrides,
                )
            elif "uvit_" in dec_type:
                self.decoder = build_uvit(
                    dec_type,
                    sample_size=size,
                    in_channels=self.n_channels,
                    out_channels=self.n_channels,
                    cond_dim=self.latent_dim,
                    cond_type=conditioning,
                    mid_drop_rate=dec_transformer_dropout,
                    overrides=overrides,
                )
            else:
                raise ValueError(f"dec_type {dec_type!r} is neither a U-Net ('unet_patched') nor a UViT ('uvit_*')")
            self.scheduler_name = scheduler
            self.noise_scheduler = make_scheduler(scheduler, **self._scheduler_config())
        except ValueError as exc:
            raise OfficialConfigError(str(exc)) from None

    def _scheduler_config(self) -> dict[str, Any]:
        """The keywords ml-4m's ``DiVAE`` passes to its scheduler (the rest stay at the scheduler's defaults)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "thresholding": self.thresholding,
            "clip_sample": self.clip_sample,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self.prediction_type,
            "zero_terminal_snr": self.zero_terminal_snr,
        }

    def _resolve_scheduler(self, scheduler: str | diffusers.SchedulerMixin | None) -> diffusers.SchedulerMixin:
        if scheduler is None:
            return self.noise_scheduler
        if isinstance(scheduler, str):
            try:
                return scheduler_class(scheduler)(**self._scheduler_config())
            except ValueError as exc:
                raise OfficialConfigError(str(exc)) from None
        return scheduler

    def sample_mask(self, quant: torch.Tensor, low: int = 0, high: int | None = None) -> torch.Tensor:
        """A random (B, H_Q, W_Q) mask (True = dropped) with between ``low`` and ``high`` tokens kept per sample
        (ml-4m's masked classifier-free-guidance training)."""
        b, _, h, w = quant.shape
        high = h * w if high is None else high
        zero_idxs = torch.randint(low=low, high=high + 1, size=(b,), device=quant.device)
        order = torch.argsort(torch.rand(b, h * w, device=quant.device), dim=1)
        mask = torch.where(order < zero_idxs.unsqueeze(1), 0, 1)
        return rearrange(mask, "b (h w) -> b h w", h=h, w=w).bool()

    def decode_quant(  # type: ignore[override]  # ml-4m's explicit keywords
        self,
        quant: torch.Tensor,
        timesteps: int | None = None,
        scheduler: str | diffusers.SchedulerMixin | None = None,
        generator: torch.Generator | None = None,
        image_size: int | tuple[int, int] | None = None,
        verbose: bool = False,
        scheduler_timesteps_mode: str = "trailing",
        orig_res: torch.Tensor | tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Sample an image (B, C, H, W) conditioned on quantised latents (B, D_Q, H_Q, W_Q).

        ``timesteps`` defaults to ``num_train_timesteps`` (1000 steps: pass a small number); ``image_size`` to the
        decoder's training size (448 or 512 for the released tokenizers, not the token grid); ``scheduler`` to
        this tokenizer's (DDPM unless its config says ``ddim``); ``scheduler_timesteps_mode`` reaches DDIM only."""
        return sample(
            self.decoder,
            self._resolve_scheduler(scheduler),
            quant,
            timesteps=timesteps,
            generator=generator,
            image_size=image_size,
            verbose=verbose,
            scheduler_timesteps_mode=scheduler_timesteps_mode,
            orig_res=orig_res,
        )

    def decode_tokens(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Tokens (B, H_Q, W_Q) -> sampled image; keywords as :meth:`decode_quant`."""
        return self.decode_quant(self.tokens_to_embedding(tokens), **kwargs)

    def autoencode(  # type: ignore[override]  # ml-4m names the input input_clean
        self,
        input_clean: torch.Tensor,
        timesteps: int | None = None,
        scheduler: str | diffusers.SchedulerMixin | None = None,
        generator: torch.Generator | None = None,
        verbose: bool = True,
        scheduler_timesteps_mode: str = "trailing",
        orig_res: torch.Tensor | tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Encode, quantise and sample back at the input's size (ml-4m uses the input's last dimension)."""
        quant, _, _ = self.encode(input_clean)
        return self.decode_quant(
            quant,
            timesteps=timesteps,
            scheduler=scheduler,
            generator=generator,
            image_size=input_clean.shape[-1],
            verbose=verbose,
            scheduler_timesteps_mode=scheduler_timesteps_mode,
            orig_res=orig_res,
        )

    def forward(  # type: ignore[override]
        self,
        input_clean: torch.Tensor,
        input_noised: torch.Tensor,
        timesteps: torch.Tensor | float | int,
        cond_mask: torch.Tensor | None = None,
        orig_res: torch.Tensor | tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward: encode ``input_clean``, denoise ``input_noised`` at ``timesteps`` conditioned on the
        quantised latent -> (decoder prediction, code loss). In training mode with ``cls_free_guidance_dropout``,
        whole conditions (or, with ``masked_cfg``, random token subsets) are dropped as ml-4m does."""
        quant, code_loss, _ = self.encode(input_clean)
        if cond_mask is None and self.training and self.cls_free_guidance_dropout > 0.0:
            b, _, h, w = quant.shape
            drop = torch.bernoulli(torch.full((b,), self.cls_free_guidance_dropout)).to(quant.device, torch.bool)
            cond_mask = repeat(drop, "b -> b h w", h=h, w=w)
            if self.masked_cfg:
                cond_mask = self.sample_mask(quant, self.masked_cfg_low, self.masked_cfg_high) * cond_mask
        dec = self.decoder(input_noised, timesteps, quant, cond_mask=cond_mask, orig_res=orig_res)
        return dec, code_loss
