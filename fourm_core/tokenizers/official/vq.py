"""ml-4m's tokenizer classes ``VQ`` (encoder + quantizer) and ``VQVAE`` (plus a ViT or MLP decoder), state-dict
compatible with the published ``EPFL-VILAB/4M_tokenizers_*`` weights and with ml-4m's method names.

A hub ``config.json`` holds the constructor keywords, so the constructors take ml-4m's argument names. Keywords
ml-4m accepts only for training (:data:`TRAINING_ONLY_KWARGS`: codebook EMA settings, ``ckpt_path``,
``ignore_keys``, ``freeze_enc``, ...) are accepted and ignored: weights come from ``model.safetensors``, never from a
pickled ``ckpt_path``. Anything else is refused by :meth:`VQ.from_config` with the names (ml-4m silently swallows
them through ``**kwargs``, which hides typos such as ``n_channel``).

One fourm extension keyword: ``fourm_size_overrides``, a dict of constructor-keyword overrides per sub-module
(``{"encoder": {"dim_tokens": 32, "depth": 1, "num_heads": 2}, "decoder": {...}}``) applied on top of the named
architecture (``vit_b_enc``, ``BottleneckMLP/B_6-Wi_1024``, ...). Only the small CI fixtures built from ml-4m's
classes use it; real hub configs never have it.

Subclassing (``DiVAE``): call ``super().__init__(**base_kwargs)`` (which builds ``cls_emb``, ``encoder``,
``quant_proj`` and ``quantize`` in ml-4m's order), then build the decoder in the subclass's ``__init__``, reading
``self.size_overrides.get("decoder")``; override :meth:`decode_quant`, :meth:`autoencode` and ``forward``. The
``__init__`` keywords of every class in the MRO are what :meth:`from_config` accepts, so a subclass's own keywords
(and its own training-only ones, listed in a class attribute ``TRAINING_ONLY_KWARGS``) are picked up automatically.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from fourm_core.tokenizers.official.loader import OfficialTokenizerError
from fourm_core.tokenizers.official.mlp import build_mlp
from fourm_core.tokenizers.official.quantizers import Memcodes, VectorQuantize
from fourm_core.tokenizers.official.vit import build_vit

__all__ = ["ML4M_SCRIPT_ARGS", "TRAINING_ONLY_KWARGS", "VQ", "VQVAE", "OfficialConfigError"]

#: the options of ml-4m's ``run_training_vqvae.py`` / ``run_training_divae.py`` (and the names
#: ``get_image_tokenizer`` renames them to) that a published config may carry beside the constructor's keywords
ML4M_SCRIPT_ARGS = frozenset(
    """
    auto_resume batch_size batch_size_eval blr cache_datasets clip_grad codebook_weight coef_ema_dead_code data_path
    dataset_size dec_transformer_dropout decoder_type device dist_eval dist_on_itp dist_url domain dtype dtype_percept
    encoder_ckpt encoder_type epoch_eval epochs eval_data_path eval_freq eval_image_log_freq eval_metrics_freq
    eval_noise_schedule eval_only eval_res_cond find_unused_params full_ckpt hflip imagenet_default_mean_and_std
    input_size input_size_dec input_size_enc input_size_eval input_size_max input_size_min local_rank
    log_codebook_usage log_wandb loss_fn mask_size mask_value masked_cfg_high masked_cfg_low min_crop_scale min_lr
    model_ema model_ema_decay model_ema_force_cpu model_ema_update_freq model_type momentum no_auto_resume
    no_codebook_usage no_dist_eval no_find_unused_params no_freeze_enc no_inception no_kmeans_init no_log_wandb
    no_masked_cfg no_norm_codes no_norm_latents no_out_conv no_pin_mem no_post_mlp no_resolution_cond no_use_wds
    no_zero_terminal_snr num_eval_metrics_samples num_eval_timesteps num_logged_images num_workers opt opt_betas
    opt_eps output_dir percept_loss_blocks percept_loss_distance percept_loss_type percept_loss_weight pin_mem
    quantizer_ema_decay quantizer_type resolution_cond resolution_step resume s3_data_endpoint s3_endpoint
    s3_multipart_chunksize_mb s3_multipart_threshold_mb s3_path s3_save_dir save_ckpt_freq seed show_user_warnings
    skip_grad standardize_surface_normals start_epoch step_eval use_wds use_xformer wandb_entity wandb_project
    wandb_run_name wandb_tags warmup_epochs warmup_lr warmup_steps wds_n_repeats wds_shuffle_buffer_repeat
    wds_shuffle_buffer_tar weight_decay weight_decay_end world_size
    """.split()
)

#: keywords ml-4m's ``VQ`` accepts that only matter for training (EMA codebook updates, checkpoint surgery, freezing)
TRAINING_ONLY_KWARGS = frozenset(
    {
        "sync_codebook",
        "ema_decay",
        "threshold_ema_dead_code",
        "code_replacement_policy",
        "kmeans_init",
        "ckpt_path",
        "ignore_keys",
        "freeze_enc",
    }
)


class OfficialConfigError(OfficialTokenizerError):
    """An official tokenizer config that cannot build a model (an unknown keyword, a bad architecture name)."""


class VQ(nn.Module):
    """Encoder + quantizer of an ml-4m tokenizer; usable alone to tokenize (``load_official_tokenizer(...,
    encoder_only=True)``). ``decode_quant`` / ``autoencode`` belong to the subclasses.

    Inputs are what ml-4m's training transforms produce: (B, C, H, W) images or feature maps (feature tokenizers
    take the patch grid (B, C, N_H, N_W) since ``patch_proj=False``), (B, H, W) class ids with ``n_labels``
    (semantic segmentation), (B, C, 1, 1) vectors for the global and pose tokenizers.
    """

    TRAINING_ONLY_KWARGS: frozenset[str] = TRAINING_ONLY_KWARGS

    def __init__(
        self,
        image_size: int = 224,
        image_size_enc: int | None = None,
        n_channels: int = 3,
        n_labels: int | None = None,
        enc_type: str = "vit_b_enc",
        patch_proj: bool = True,
        post_mlp: bool = False,
        patch_size: int = 16,
        quant_type: str = "lucid",
        codebook_size: int = 16384,
        num_codebooks: int = 1,
        latent_dim: int = 32,
        norm_codes: bool = True,
        norm_latents: bool = False,
        commitment_weight: float = 1.0,
        undo_std: bool = False,
        fourm_size_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        # accepted for ml-4m configs, ignored (training only; see TRAINING_ONLY_KWARGS)
        sync_codebook: bool = True,
        ema_decay: float = 0.99,
        threshold_ema_dead_code: float = 0.25,
        code_replacement_policy: str = "batch_random",
        kmeans_init: bool = False,
        ckpt_path: str | None = None,
        ignore_keys: Any = None,
        freeze_enc: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.n_channels = n_channels
        self.n_labels = n_labels
        self.enc_type = enc_type
        self.patch_proj = patch_proj
        self.post_mlp = post_mlp
        self.patch_size = patch_size
        self.quant_type = quant_type
        self.codebook_size = int(codebook_size)
        self.num_codebooks = num_codebooks
        self.latent_dim = latent_dim
        self.norm_codes = norm_codes
        self.undo_std = undo_std
        self.size_overrides: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (fourm_size_overrides or {}).items()}

        # semantic segmentation: class ids are embedded before the encoder
        self.cls_emb = nn.Embedding(n_labels, n_channels) if n_labels is not None else None
        self.encoder, self.enc_dim = self._build_encoder(image_size_enc or image_size)
        self.quant_proj = nn.Conv2d(self.enc_dim, latent_dim, 1)
        self.quantize: VectorQuantize | Memcodes
        if quant_type == "lucid":
            self.quantize = VectorQuantize(
                dim=latent_dim,
                codebook_size=self.codebook_size,
                codebook_dim=latent_dim,
                heads=num_codebooks,
                use_cosine_sim=norm_codes,
                commitment_weight=commitment_weight,
                norm_latents=norm_latents,
            )
        elif quant_type == "memcodes":
            self.quantize = Memcodes(dim=latent_dim, codebook_size=self.codebook_size, heads=num_codebooks)
        else:
            raise OfficialConfigError(f"quant_type {quant_type!r} is not one of 'lucid', 'memcodes'")

    # -- construction --------------------------------------------------------------------------------------------

    def _build_encoder(self, resolution: int) -> tuple[nn.Module, int]:
        overrides = self.size_overrides.get("encoder")
        if "vit" in self.enc_type:
            enc = build_vit(
                self.enc_type,
                self.n_channels,
                self.patch_size,
                resolution,
                patch_proj=self.patch_proj,
                post_mlp=self.post_mlp,
                overrides=overrides,
            )
            return enc, enc.dim_tokens
        if "MLP" in self.enc_type:
            mlp = build_mlp(self.enc_type, dim_in=self.n_channels, dim_out=None, overrides=overrides)
            return mlp, mlp.dim_out
        raise OfficialConfigError(f"enc_type {self.enc_type!r} is neither a ViT ('vit_b_enc') nor an MLP id")

    @classmethod
    def config_keys(cls) -> tuple[set[str], set[str]]:
        """(every keyword the class chain accepts, the training-only ones among them)."""
        accepted: set[str] = set()
        for klass in cls.__mro__:
            if isinstance(klass, type) and issubclass(klass, VQ) and "__init__" in vars(klass):
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                        accepted.add(p.name)
        return accepted, set(getattr(cls, "TRAINING_ONLY_KWARGS", TRAINING_ONLY_KWARGS))

    @classmethod
    def check_config(cls, config: Mapping[str, Any], source: str = "config") -> None:
        """Raise :class:`OfficialConfigError` naming every key ``cls`` does not accept (with the nearest name)."""
        accepted, _ = cls.config_keys()
        unknown = sorted(set(config) - accepted)
        if not unknown:
            return
        hints = []
        for key in unknown:
            near = difflib.get_close_matches(key, sorted(accepted), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise OfficialConfigError(f"{source}: unknown {cls.__name__} keyword(s) {', '.join(hints)}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "config") -> VQ:
        """Build from a hub-style config dict of constructor keywords, refusing unknown keys by name.

        ml-4m builds a tokenizer from its training script's whole argument namespace (``get_image_tokenizer``
        calls ``model_type(**vars(args))``), so a published ``config.json`` may carry those arguments beside the
        constructor's; the ones the constructor does not take (:data:`ML4M_SCRIPT_ARGS`) are dropped here."""
        accepted, _ = cls.config_keys()
        kept = {k: v for k, v in config.items() if k in accepted or k not in ML4M_SCRIPT_ARGS}
        cls.check_config(kept, source)
        return cls(**kept)

    # -- ml-4m's inference API -----------------------------------------------------------------------------------

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-standardised input back to [-1, 1] when ``undo_std``; class ids (B, H, W) to their embedding."""
        if self.undo_std:
            # torchvision's normalize with mean -m/s and std 1/s, exactly ml-4m's ``denormalize``
            from torchvision.transforms.functional import normalize

            mean = [-m / s for m, s in zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)]
            x = 2.0 * normalize(x.clone(), mean=mean, std=[1 / s for s in IMAGENET_DEFAULT_STD]) - 1.0
        if self.cls_emb is not None:
            x = rearrange(self.cls_emb(x), "b h w c -> b c h w")
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input -> (quantized latents (B, D_Q, H_Q, W_Q), code loss, tokens)."""
        h = self.quant_proj(self.encoder(self.prepare_input(x)))
        return self.quantize(h)

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> tokens: (B, H_Q, W_Q), or (B, heads, H_Q, W_Q) with several codebooks (global and pose
        tokenizers: (B, heads, 1, 1); ml-4m's pre-tokenising script squeezes that to (B, heads))."""
        return self.encode(x)[2]

    def tokens_to_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> the codebook entries as a (B, D_Q, H_Q, W_Q) map."""
        return self.quantize.indices_to_embedding(tokens)

    def decode_quant(self, quant: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Quantized latents -> output; defined by the subclass that has a decoder."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder (load it without encoder_only)")

    def decode_tokens(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Tokens -> output (``decode_quant`` of their codebook entries)."""
        return self.decode_quant(self.tokens_to_embedding(tokens), **kwargs)

    def autoencode(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Input -> reconstruction; defined by the subclass that has a decoder."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder (load it without encoder_only)")

    def forward(self, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Input -> (quantized latents, code loss), as ml-4m's ``VQ.forward``."""
        quant, code_loss, _ = self.encode(x)
        return quant, code_loss


class VQVAE(VQ):
    """``VQ`` plus ``post_quant_proj`` and a ViT (``vit_*_dec``, optional ConvNeXt ``out_conv``) or MLP decoder.

    The decoder outputs ``n_channels`` channels, or ``n_labels`` logits for semantic segmentation; its position
    embedding is built at ``image_size_dec`` (default ``image_size``) with patch ``patch_size_dec`` (default
    ``patch_size``) and interpolated to the token grid it is given."""

    def __init__(
        self,
        dec_type: str = "vit_b_dec",
        out_conv: bool = False,
        image_size_dec: int | None = None,
        patch_size_dec: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dec_type = dec_type
        out_channels = self.n_channels if self.n_labels is None else self.n_labels
        overrides = self.size_overrides.get("decoder")
        if "vit" in dec_type:
            self.decoder: nn.Module = build_vit(
                dec_type,
                out_channels,
                patch_size_dec or self.patch_size,
                image_size_dec or self.image_size,
                patch_proj=self.patch_proj,
                post_mlp=self.post_mlp,
                out_conv=out_conv,
                overrides=overrides,
            )
            self.dec_dim = self.decoder.dim_tokens
        elif "MLP" in dec_type:
            self.decoder = build_mlp(dec_type, dim_in=None, dim_out=out_channels, overrides=overrides)
            self.dec_dim = self.decoder.dim_in
        else:
            raise OfficialConfigError(f"dec_type {dec_type!r} is neither a ViT ('vit_b_dec') nor an MLP id")
        self.post_quant_proj = nn.Conv2d(self.latent_dim, self.dec_dim, 1)

    def decode_quant(self, quant: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Quantized latents (B, D_Q, H_Q, W_Q) -> output (B, C, H, W) (logits for semseg)."""
        return self.decoder(self.post_quant_proj(quant))

    def forward(self, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Input -> (reconstruction, code loss)."""
        quant, code_loss, _ = self.encode(x)
        return self.decode_quant(quant), code_loss

    def autoencode(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Input -> reconstruction."""
        return self.forward(x)[0]
