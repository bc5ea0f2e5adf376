"""ml-4m's patched U-Net diffusion decoder (``unet_patched``), with ml-4m's state-dict names and numerics.

The published diffusion tokenizers (``EPFL-VILAB/4M_tokenizers_{rgb,depth,normal}_*``) store this module under
``decoder.*``. It is the guided-diffusion U-Net (ADM) that ml-4m carries in ``fourm/vq/models/unet/``: residual blocks
``in_layers`` / ``emb_layers`` / ``out_layers`` / ``skip_connection``, spatial attention blocks with a fused 1-D
``qkv`` convolution and ``proj_out``, a timestep MLP ``time_embed.{0,2}``, ``input_blocks`` / ``middle_block`` /
``output_blocks`` / ``out``. :class:`PatchedUNetCondCat` runs it in a patch space: the noisy image is patchified
(patch 4 for ``unet_patched``) and concatenated with the quantised latent, nearest-upsampled to the patch grid.

Why it is written here: neither diffusers nor timm has the ADM U-Net under these names (diffusers'
``UNet2DModel`` names its layers ``down_blocks.*.resnets.*.conv1`` and normalises differently), and a renaming
table would still not give ADM's order of operations. Details that matter for equal numbers:

- every GroupNorm (32 groups) runs in float32 and casts back (``GroupNorm32``);
- the timestep embedding is cos-then-sin (diffusers' ``get_timestep_embedding`` with ``flip_sin_to_cos=True`` and
  no frequency shift computes the same values in the same order, so it is used);
- attention scales q and k each by ``ch ** -0.25`` before the product, softmax in float32, and the legacy layout
  splits heads before q/k/v (``use_new_attention_order=False``, as ml-4m builds it);
- the output convolutions of every residual block, every attention block and of ``out`` start at zero in ml-4m; the
  published weights replace them, so nothing here depends on that init (it is kept for training from scratch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "UNET_PRESETS",
    "AttentionBlock",
    "PatchedUNetCondCat",
    "ResBlock",
    "UNetModel",
    "build_unet",
]

#: ml-4m's U-Net builder names (``fourm/vq/models/unet/unet.py``) -> the sizes they fix.
UNET_PRESETS: dict[str, dict[str, Any]] = {
    "unet_patched": {
        "patch_size": 4,
        "model_channels": 256,
        "num_res_blocks": 3,
        "attention_resolutions": (4, 8),
        "channel_mult": (1, 2, 2, 2),
    },
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (ADM's normalisation; matters under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """ADM's normalisation layer: 32 groups, eps 1e-5 (so ``channels`` must be a multiple of 32)."""
    return GroupNorm32(32, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (ADM starts its residual output layers at zero)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepEmbedSequential(nn.Sequential):
    """A sequence whose residual blocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest 2x upsampling, optionally followed by a 3x3 convolution (``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2x downsampling by a strided 3x3 convolution or average pooling (``op``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError("pooling downsample cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """ADM residual block conditioned on the timestep embedding (added, or FiLM when ``use_scale_shift_norm``)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, self.out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a fused 1-D ``qkv`` convolution and a zero-initialised ``proj_out``.

    ``new_order=False`` (ml-4m's setting) reads the fused channels as (heads, 3, ch), ``True`` as (3, heads, ch).
    Written out rather than with ``scaled_dot_product_attention``: ADM scales q and k by ``ch ** -0.25`` each and
    takes the softmax in float32, which rounds differently from a fused kernel."""

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"attention channels {channels} not divisible by head channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.new_order = use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self._attend(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.num_heads)
        scale = 1 / math.sqrt(math.sqrt(ch))
        if self.new_order:
            q, k, v = (t.reshape(bs * self.num_heads, ch, length) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(bs * self.num_heads, ch * 3, length).split(ch, dim=1)
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        return torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)


class UNetModel(nn.Module):
    """ADM U-Net: ``channel_mult`` levels of ``num_res_blocks`` residual blocks, attention at the downsampling
    factors in ``attention_resolutions``, a middle block, and skip-connected output blocks."""

    def __init__(
        self,
        image_size: int = 224,
        in_channels: int = 3,
        model_channels: int = 256,
        out_channels: int = 3,
        num_res_blocks: int = 3,
        attention_resolutions: Sequence[int] = (8, 16),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if dims != 2:
            raise ValueError(f"only 2-D U-Nets are supported (ml-4m's tokenizers use dims=2), got dims={dims}")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = self.sample_size = image_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.model_channels = model_channels
        self.num_classes = num_classes
        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        def res(ch_in: int, ch_out: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(
                ch_in,
                time_embed_dim,
                dropout,
                out_channels=ch_out,
                use_checkpoint=use_checkpoint,
                use_scale_shift_norm=use_scale_shift_norm,
                **kw,
            )

        def attn(ch_in: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch_in, heads, num_head_channels, use_checkpoint, use_new_attention_order)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        input_block_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                input_block_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch), attn(ch, num_heads), res(ch))

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                layers = [res(ch + ich, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), zero_module(nn.Conv2d(input_ch, out_channels, 3, padding=1))
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor | float | int, y: torch.Tensor | None = None, **_: Any
    ) -> torch.Tensor:
        """``x`` (B, C, H, W), ``timesteps`` a number, a 0-d tensor or one per sample; ``y`` class labels when the
        model is class-conditional. Extra keywords (``orig_res``) are accepted and ignored, as in ml-4m."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y exactly when the U-Net is class-conditional")
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=x.device)
        elif timesteps.dim() == 0:
            timesteps = timesteps[None].to(x.device)
        t_emb = get_timestep_embedding(timesteps, self.model_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        emb = self.time_embed(t_emb)
        if y is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


class PatchedUNetCondCat(UNetModel):
    """The U-Net run on ``patch_size`` x ``patch_size`` patches, the condition nearest-upsampled to the patch grid
    and concatenated to the patchified input (Jabri et al. style patching, https://arxiv.org/abs/2207.04316)."""

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, patch_size: int, **kwargs: Any) -> None:
        super().__init__(
            in_channels=in_channels * patch_size * patch_size + cond_channels,
            out_channels=out_channels * patch_size * patch_size,
            **kwargs,
        )
        self.patch_size = patch_size
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """``sample`` (B, C, H, W) noisy image, ``encoder_hidden_states`` (B, D, H_Q, W_Q) quantised latent,
        ``cond_mask`` (B, H_Q, W_Q) True where the condition is dropped (set to zero)."""
        p = self.patch_size
        _, _, height, width = sample.shape
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} must be divisible by the decoder patch size {p}")
        nh, nw = height // p, width // p
        x = rearrange(sample, "b c (nh ph) (nw pw) -> b (c ph pw) nh nw", ph=p, pw=p)
        cond = encoder_hidden_states
        if cond_mask is not None:
            cond = torch.where(cond_mask[:, None, :, :], 0.0, cond)
        x = torch.cat([x, F.interpolate(cond, (nh, nw), mode="nearest")], dim=1)
        x = super().forward(x, timestep, **kwargs)
        return rearrange(x, "b (c ph pw) nh nw -> b c (nh ph) (nw pw)", ph=p, pw=p)


def build_unet(
    dec_type: str,
    *,
    in_channels: int,
    out_channels: int,
    cond_channels: int,
    image_size: int,
    overrides: Mapping[str, Any] | None = None,
) -> PatchedUNetCondCat:
    """The U-Net decoder ml-4m's ``DiVAE`` builds for ``dec_type`` (a :data:`UNET_PRESETS` name).

    ``overrides`` replaces preset sizes (the fixtures' ``fourm_size_overrides["decoder"]``); real configs have none.
    """
    if dec_type not in UNET_PRESETS:
        raise ValueError(f"unknown U-Net decoder {dec_type!r}; choices: {', '.join(sorted(UNET_PRESETS))}")
    kwargs = {**UNET_PRESETS[dec_type], **dict(overrides or {})}
    return PatchedUNetCondCat(
        in_channels=in_channels,
        out_channels=out_channels,
        cond_channels=cond_channels,
        image_size=image_size,
        **kwargs,
    )
