"""ml-4m's UViT diffusion decoder (``uvit_*``): a convolutional U-Net around a Transformer bottleneck.

A ``DiVAE`` whose config names ``dec_type: uvit_*`` stores this under ``decoder.*``; the released edge tokenizer
(``4M_tokenizers_edge_8k_224-512``) has a ``uvit_b_p4_f16`` decoder by its file size although its yaml names
``unet_patched``. The condition (the quantised latent) is added to the bottleneck tokens (``concat``, a learnt
``mask_token`` where dropped) or cross-attended in every layer (``xattn``); the timestep drives adaLN modulation and
adaLN-Zero gates (https://arxiv.org/abs/2301.11093).

Library reuse: the convolutional part is diffusers' ``DownBlock2D`` / ``UpBlock2D`` / ``Upsample2D`` /
``Timesteps`` / ``TimestepEmbedding``, which ml-4m builds (from diffusers 0.20; 0.42 has the same names and
operations, checked by the fixtures), and timm's ``Mlp``. The Transformer layers are written here: they carry
ml-4m's adaLN names, and attention scales ``q @ k^T`` afterwards and masks with ``-finfo.max`` (not fused).

State-dict note: ml-4m's ``downsample_mid`` is diffusers' ``Downsample2D``, which registers its convolution twice
(``Conv2d_0`` and ``conv``); ``safetensors.torch.save_model`` (``PyTorchModelHubMixin``) keeps one name of a shared
tensor, the first in sorted order, so a hub file holds only ``downsample_mid.Conv2d_0.*``. :class:`MidDownsample`
lists only that name in ``state_dict()`` (so the hub file loads strictly with a plain ``load_state_dict``) and
accepts ml-4m's in-memory state dict, with both names, too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.unets.unet_2d_blocks import DownBlock2D, UpBlock2D
from diffusers.models.upsampling import Upsample2D
from einops import rearrange, repeat
from timm.layers import DropPath, Mlp
from torch import nn

from fourm_core.tokenizers.official.vit import build_2d_sincos_posemb

__all__ = ["UVIT_PRESETS", "UViT", "build_uvit"]

_B = {"mid_layers": 12, "mid_num_heads": 12, "mid_dim": 768}
_L = {"mid_layers": 24, "mid_num_heads": 16, "mid_dim": 1024}
_H = {"mid_layers": 32, "mid_num_heads": 16, "mid_dim": 1280}
_CONV = {"patch_size": 4, "layers_per_block": 2, "mid_mlp_ratio": 4, "mid_qkv_bias": True}
_F16 = {**_CONV, "block_out_channels": (128, 256), "downsample_before_mid": True}
_F8 = {**_CONV, "block_out_channels": (128, 256), "downsample_before_mid": False}
_F16X = {**_CONV, "block_out_channels": (128, 256, 512), "downsample_before_mid": False}

#: ml-4m's UViT builder names (``fourm/vq/models/uvit.py``) -> the sizes they fix.
UVIT_PRESETS: dict[str, dict[str, Any]] = {
    "uvit_b_p4_f16": {**_F16, **_B},
    "uvit_l_p4_f16": {**_F16, **_L},
    "uvit_h_p4_f16": {**_F16, **_H},
    "uvit_b_p4_f16_longskip": {**_F16, **_B, "mid_layers": 13, "mid_use_long_skip": True},
    "uvit_l_p4_f16_longskip": {**_F16, **_L, "mid_layers": 25, "mid_use_long_skip": True},
    "uvit_b_p4_f8": {**_F8, **_B},
    "uvit_l_p4_f8": {**_F8, **_L},
    "uvit_b_p4_f16_extraconv": {**_F16X, **_B},
    "uvit_l_p4_f16_extraconv": {**_F16X, **_L},
}

_ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: per-sample scale and shift broadcast over the tokens."""
    return x * (1.0 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    """Self-attention (``qkv``, ``proj``); ``mask`` (B, N, N) True = blocked."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if mask is not None:
            attn = attn.masked_fill(mask.unsqueeze(1), -torch.finfo(attn.dtype).max)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)))


class CrossAttention(nn.Module):
    """Cross-attention of the tokens to a context (``q``, ``kv`` with k first, ``proj``); ``mask`` (B, N, M)."""

    def __init__(
        self,
        dim: int,
        dim_context: int | None = None,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim_context or dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        m = context.shape[1]
        q = self.q(x).reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)
        kv = self.kv(context).reshape(b, m, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if mask is not None:
            attn = attn.masked_fill(rearrange(mask, "b n m -> b 1 n m"), -torch.finfo(attn.dtype).max)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1)))


class Block(nn.Module):
    """Transformer layer with adaLN modulation (``adaLN_modulation``: a shift and a scale per sub-layer) and
    adaLN-Zero gates (``adaLN_gate``); ``skip_linear`` merges a long skip connection when there is one.

    ``cross=False`` is ml-4m's ``Block`` (``attn``, MLP); ``cross=True`` its ``DecoderBlock`` (``self_attn``, then
    ``cross_attn`` of the ``query_norm``-ed tokens to the ``context_norm``-ed condition, then MLP)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        temb_dim: int,
        dim_context: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        skip: bool = False,
        cross: bool = False,
    ):
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(dim)
        attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        if cross:
            self.self_attn = attn
            self.cross_attn = CrossAttention(dim, dim_context or dim, num_heads, qkv_bias, attn_drop, drop)
            self.query_norm = nn.LayerNorm(dim)
            self.context_norm = nn.LayerNorm(dim_context or dim)
        else:
            self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=(0.0, drop))
        n_sub = 3 if cross else 2
        self.adaLN_modulation = nn.Linear(temb_dim, 2 * n_sub * dim)
        self.adaLN_gate = nn.Linear(temb_dim, n_sub * dim)
        nn.init.zeros_(self.adaLN_gate.weight)
        nn.init.zeros_(self.adaLN_gate.bias)
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(
        self,
        x: torch.Tensor,
        temb: torch.Tensor,
        context: torch.Tensor | None = None,
        xa_mask: torch.Tensor | None = None,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = F.silu(temb)
        n_sub = 3 if self.cross else 2
        gates = self.adaLN_gate(t).unsqueeze(1).chunk(n_sub, dim=-1)
        mods = self.adaLN_modulation(t).chunk(2 * n_sub, dim=-1)
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        attn = self.self_attn if self.cross else self.attn
        x = x + gates[0] * self.drop_path(attn(modulate(self.norm1(x), mods[0], mods[1])))
        if self.cross:
            q = modulate(self.query_norm(x), mods[2], mods[3])
            x = x + gates[1] * self.drop_path(self.cross_attn(q, self.context_norm(context), xa_mask))
        return x + gates[-1] * self.drop_path(self.mlp(modulate(self.norm2(x), mods[-2], mods[-1])))


class MidDownsample(nn.Module):
    """ml-4m's ``downsample_mid`` (a 3x3 stride-2 convolution) under the one name a hub file keeps, ``Conv2d_0``;
    a ``conv.*`` alias in a loaded state dict (ml-4m's ``state_dict()`` has both) is folded onto it."""

    def __init__(self, channels: int):
        super().__init__()
        self.Conv2d_0 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.register_load_state_dict_pre_hook(self._fold_alias)

    @staticmethod
    def _fold_alias(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
        for name in ("weight", "bias"):
            alias = state.pop(f"{prefix}conv.{name}", None)
            if alias is not None:
                state.setdefault(f"{prefix}Conv2d_0.{name}", alias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv2d_0(x)


class _Bottleneck(nn.Module):
    """Both bottlenecks (ml-4m's arguments): the frozen sin-cos ``mid_pos_emb`` Parameter (1, D, S, S), the layers
    ``mid_block`` (in ml-4m's registration order), the in/out projections, the optionally long-skip run."""

    concat: bool = True

    def __init__(
        self,
        unet_dim: int = 1024,
        cond_dim: int = 32,
        mid_layers: int = 12,
        mid_num_heads: int = 12,
        mid_dim: int = 768,
        mid_mlp_ratio: float = 4,
        mid_qkv_bias: bool = True,
        mid_drop_rate: float = 0.0,
        mid_attn_drop_rate: float = 0.0,
        mid_drop_path_rate: float = 0.0,
        time_embed_dim: int = 512,
        hw_posemb: int = 16,
        use_long_skip: bool = False,
    ):
        super().__init__()
        self.mid_pos_emb = nn.Parameter(build_2d_sincos_posemb(hw_posemb, hw_posemb, mid_dim), requires_grad=False)
        if use_long_skip and mid_layers % 2 != 1:
            raise ValueError("mid_layers must be odd with long skip connections")
        self.use_long_skip = use_long_skip
        dpr = [x.item() for x in torch.linspace(0, mid_drop_path_rate, mid_layers)]
        kw = {"mlp_ratio": mid_mlp_ratio, "qkv_bias": mid_qkv_bias, "drop": mid_drop_rate}
        self.mid_block = nn.ModuleList(
            Block(mid_dim, mid_num_heads, time_embed_dim, cond_dim, **kw, attn_drop=mid_attn_drop_rate,
                  drop_path=dpr[i], skip=i > mid_layers // 2 and use_long_skip, cross=not self.concat)
            for i in range(mid_layers)
        )  # fmt: skip
        if self.concat:
            self.mid_cond_proj = nn.Linear(cond_dim, mid_dim)
        self.mid_proj_in = nn.Linear(unet_dim, mid_dim)
        self.mid_proj_out = nn.Linear(mid_dim, unet_dim)
        if self.concat:
            self.mask_token = nn.Parameter(torch.zeros(mid_dim))

    def _run(self, x: torch.Tensor, call: Any) -> torch.Tensor:
        blocks = self.mid_block
        if not self.use_long_skip:
            for blk in blocks:
                x = call(blk, x, None)
            return x
        half = len(blocks) // 2
        skips = []
        for blk in blocks[:half]:
            x = call(blk, x, None)
            skips.append(x)
        x = call(blocks[half], x, None)
        for blk in blocks[half + 1 :]:
            x = call(blk, x, skips.pop())
        return x


class TransformerConcatCond(_Bottleneck):
    """Bottleneck that adds the projected condition to the tokens (a learnt ``mask_token`` where it is dropped)."""

    concat = True

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, _, h, w = x.shape
        x = self.mid_proj_in(rearrange(x, "b d h w -> b (h w) d"))
        cond = self.mid_cond_proj(rearrange(F.interpolate(cond, (h, w)), "b d h w -> b (h w) d"))
        if cond_mask is not None:
            cond_mask = F.interpolate(cond_mask.unsqueeze(1).float(), (h, w), mode="nearest") > 0.5
            cond[rearrange(cond_mask, "b 1 h w -> b (h w)")] = self.mask_token.to(dtype=cond.dtype)
        pos = F.interpolate(self.mid_pos_emb, (h, w), mode="bicubic", align_corners=False)
        x = x + cond + rearrange(pos, "b d h w -> b (h w) d")
        x = self._run(x, lambda blk, y, skip: blk(y, temb, skip=skip))
        return rearrange(self.mid_proj_out(x), "b (h w) d -> b d h w", h=h, w=w)


class TransformerXattnCond(_Bottleneck):
    """Bottleneck whose every layer cross-attends to the condition tokens (masked where ``cond_mask`` is True)."""

    concat = False

    def forward(
        self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, _, h, w = x.shape
        x = self.mid_proj_in(rearrange(x, "b d h w -> b (h w) d"))
        cond = rearrange(cond, "b d h w -> b (h w) d")
        pos = F.interpolate(self.mid_pos_emb, (h, w), mode="nearest")
        x = x + rearrange(pos, "b d h w -> b (h w) d")
        xa_mask = repeat(cond_mask, "b h w -> b n (h w)", n=x.shape[1]) if cond_mask is not None else None
        x = self._run(x, lambda blk, y, skip: blk(y, temb, cond, xa_mask=xa_mask, skip=skip))
        return rearrange(self.mid_proj_out(x), "b (h w) d -> b d h w", h=h, w=w)


class UViT(nn.Module):
    """ml-4m's ``UViT``: patchifying ``conv_in``, diffusers down blocks, optional ``downsample_mid``, the Transformer
    ``mid_block``, optional ``upsample_mid``, diffusers up blocks, ``conv_norm_out`` and a transposed ``conv_out``
    that unpatchifies. Arguments as ml-4m's (``fourm/vq/models/uvit.py``), less the options no ``DiVAE`` can set
    (its builders pass only sizes, channels and conditioning): the Fourier time embedding, the SDXL-style
    original-resolution embedding (``res_embedding``), ``time_embedding_act_fn``, ``timestep_post_act`` and
    ``time_cond_proj_dim`` stay at ml-4m's defaults (off). ml-4m's MAE-style ``init_weights`` is not repeated: the
    decoder is built to receive published weights (the adaLN-Zero gates still start at zero)."""

    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        patch_size: int = 4,
        block_out_channels: Sequence[int] = (128, 256, 512),
        layers_per_block: int | Sequence[int] = 2,
        downsample_before_mid: bool = False,
        mid_layers: int = 12,
        mid_num_heads: int = 12,
        mid_dim: int = 768,
        mid_mlp_ratio: float = 4,
        mid_qkv_bias: bool = True,
        mid_drop_rate: float = 0.0,
        mid_attn_drop_rate: float = 0.0,
        mid_drop_path_rate: float = 0.0,
        mid_hw_posemb: int = 32,
        mid_use_long_skip: bool = False,
        cond_dim: int = 32,
        cond_type: str = "concat",
        downsample_padding: int = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        resnet_out_scale_factor: float = 1.0,
        time_embedding_dim: int | None = None,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
    ):
        super().__init__()
        if cond_type not in ("concat", "xattn"):
            raise ValueError(f"unknown UViT conditioning {cond_type!r}; choices: concat, xattn")
        if act_fn not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act_fn!r}; choices: {', '.join(sorted(_ACTIVATIONS))}")
        self.sample_size = sample_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.mid_dim = block_out_channels[-1]
        c0 = block_out_channels[0]
        self.conv_in = nn.Conv2d(in_channels, c0, kernel_size=patch_size, padding=0, stride=patch_size)
        time_embed_dim = time_embedding_dim or c0 * 4
        self.time_proj = Timesteps(c0, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(c0, time_embed_dim, act_fn=act_fn)

        # registered before the blocks are built, so the state-dict order is ml-4m's (up_blocks before the mid)
        self.down_blocks = nn.ModuleList([])
        self.up_blocks = nn.ModuleList([])
        layers = [layers_per_block] * len(block_out_channels) if isinstance(layers_per_block, int) else layers_per_block
        resnet_kw = {
            "temb_channels": time_embed_dim,
            "resnet_eps": norm_eps,
            "resnet_act_fn": act_fn,
            "resnet_groups": norm_num_groups,
            "resnet_time_scale_shift": resnet_time_scale_shift,
            "output_scale_factor": resnet_out_scale_factor,
        }
        out_ch = c0
        for i, ch in enumerate(block_out_channels):
            in_ch, out_ch = out_ch, ch
            self.down_blocks.append(
                DownBlock2D(
                    num_layers=layers[i],
                    in_channels=in_ch,
                    out_channels=out_ch,
                    add_downsample=i < len(block_out_channels) - 1,
                    downsample_padding=downsample_padding,
                    **resnet_kw,
                )
            )
        if downsample_before_mid:
            self.downsample_mid = MidDownsample(self.mid_dim)
        mid_cls = TransformerConcatCond if cond_type == "concat" else TransformerXattnCond
        self.mid_block = mid_cls(
            unet_dim=self.mid_dim,
            cond_dim=cond_dim,
            mid_layers=mid_layers,
            mid_num_heads=mid_num_heads,
            mid_dim=mid_dim,
            mid_mlp_ratio=mid_mlp_ratio,
            mid_qkv_bias=mid_qkv_bias,
            mid_drop_rate=mid_drop_rate,
            mid_attn_drop_rate=mid_attn_drop_rate,
            mid_drop_path_rate=mid_drop_path_rate,
            time_embed_dim=time_embed_dim,
            hw_posemb=mid_hw_posemb,
            use_long_skip=mid_use_long_skip,
        )
        if downsample_before_mid:
            self.upsample_mid = Upsample2D(self.mid_dim, use_conv=True, out_channels=self.mid_dim)

        rev_ch, rev_layers = list(reversed(block_out_channels)), list(reversed(layers))
        self.num_upsamplers = len(block_out_channels) - 1
        out_ch = rev_ch[0]
        for i, ch in enumerate(rev_ch):
            prev_ch, out_ch = out_ch, ch
            self.up_blocks.append(
                UpBlock2D(
                    num_layers=rev_layers[i] + 1,
                    in_channels=rev_ch[min(i + 1, len(rev_ch) - 1)],
                    out_channels=out_ch,
                    prev_output_channel=prev_ch,
                    add_upsample=i < len(rev_ch) - 1,
                    **resnet_kw,
                )
            )

        if norm_num_groups is not None:
            self.conv_norm_out: nn.Module | None = nn.GroupNorm(
                num_channels=c0, num_groups=norm_num_groups, eps=norm_eps
            )
            self.conv_act: nn.Module | None = _ACTIVATIONS[act_fn]()
        else:
            self.conv_norm_out = self.conv_act = None
        self.conv_out = nn.ConvTranspose2d(c0, out_channels, kernel_size=patch_size, stride=patch_size)

    def _timesteps(self, timestep: torch.Tensor | float | int, sample: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            timestep = torch.tensor([timestep], dtype=dtype, device=sample.device)
        elif timestep.dim() == 0:
            timestep = timestep[None].to(sample.device)
        return timestep.expand(sample.shape[0])

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        condition: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        orig_res: torch.Tensor | tuple[int, int] | None = None,
        **_: Any,
    ) -> torch.Tensor:
        """``sample`` (B, C, H, W) noisy image, ``condition`` (B, D, H_Q, W_Q); ``cond_mask`` True = dropped
        ((B, H_mid, W_mid) for concat, (B, H_Q, W_Q) for xattn); ``orig_res`` is accepted and ignored, as ml-4m
        does without ``res_embedding``."""
        up_factor = 2**self.num_upsamplers
        forward_upsample_size = any(s % up_factor != 0 for s in sample.shape[-2:])
        emb = self.time_embedding(self.time_proj(self._timesteps(timestep, sample)).to(dtype=sample.dtype))
        sample = self.conv_in(sample)
        res_samples: tuple[torch.Tensor, ...] = (sample,)
        for block in self.down_blocks:
            sample, res = block(hidden_states=sample, temb=emb)
            res_samples += res
        if hasattr(self, "downsample_mid"):
            sample = self.downsample_mid(sample)
        sample = self.mid_block(sample, emb, condition, cond_mask)
        if hasattr(self, "upsample_mid"):
            sample = self.upsample_mid(sample)
        upsample_size = None
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            res, res_samples = res_samples[-n:], res_samples[:-n]
            if i < len(self.up_blocks) - 1 and forward_upsample_size:
                upsample_size = res_samples[-1].shape[2:]
            sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)
        if self.conv_norm_out is not None and self.conv_act is not None:
            sample = self.conv_act(self.conv_norm_out(sample))
        return self.conv_out(sample)


def build_uvit(
    dec_type: str,
    *,
    sample_size: int,
    in_channels: int,
    out_channels: int,
    cond_dim: int,
    cond_type: str,
    mid_drop_rate: float,
    overrides: Mapping[str, Any] | None = None,
) -> UViT:
    """The UViT decoder ml-4m's ``DiVAE`` builds for ``dec_type`` (a :data:`UVIT_PRESETS` name); ``overrides``
    replaces preset sizes (the fixtures' ``fourm_size_overrides["decoder"]``)."""
    if dec_type not in UVIT_PRESETS:
        raise ValueError(f"unknown UViT decoder {dec_type!r}; choices: {', '.join(sorted(UVIT_PRESETS))}")
    kwargs = {**UVIT_PRESETS[dec_type], **dict(overrides or {})}
    return UViT(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        cond_dim=cond_dim,
        cond_type=cond_type,
        mid_drop_rate=mid_drop_rate,
        **kwargs,
    )
