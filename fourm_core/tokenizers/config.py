"""Configuration of tokenizers (what is saved in ``config.json``) and of their training, built from plugin specs.

The architecture sizes per preset live here, in one table, so that every family is configured the same way: the
plugin says *what* (family, transform, channels, codebook size and token count through its preset layout), this
module says *how big*.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fourm_core.spec import ModalityKind, ModalitySpec

__all__ = ["DiffusionConfig", "TokenizerModelConfig", "TrainConfig", "config_from_spec", "tokenizer_name"]


class DiffusionConfig(BaseModel):
    """The diffusion decoder of the ``divae`` family (DDPM training, DDIM sampling, as ml-4m's shipped configs:
    x0 prediction, linear betas, 1000 training steps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_timesteps: int = 1000
    sample_steps: int = Field(10, ge=1, description="DDIM steps when decoding")
    strength: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of the noise schedule sampled: 1 starts from pure noise; below 1 starts from the plain "
        "decoder's reconstruction noised to that level (SDEdit-style refinement)",
    )
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    dim: int = 128
    depth: int = 3


class TokenizerModelConfig(BaseModel):
    """Everything needed to rebuild a tokenizer's network; saved next to its weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., description="the tokenizer's name: the modality, or the shared name (edge)")
    family: Literal["vit_vqvae", "divae", "mlp_memcodes", "mask_vqvae"]
    modalities: tuple[str, ...] = Field(..., description="modalities this tokenizer serves")
    preset: str
    transform: str
    source: tuple[str, str] | None = Field(None, description="(modality, array) read instead of the modality's own")
    items: str | None = None
    evaluator: str | None = None
    channels: int = Field(..., gt=0, description="channels of the input (classes: 1)")
    num_classes: int | None = None
    input_size: int = Field(0, ge=0, description="side of the square input; 0 for vectors")
    patch_size: int = Field(1, gt=0)
    codebook_size: int = Field(..., gt=1)
    n_tokens: int = Field(..., gt=0, description="tokens per sample (or per item)")
    dim: int = 128
    enc_depth: int = 3
    dec_depth: int = 3
    heads: int = 4
    latent_dim: int = 32
    mlp_width: int = 256
    mlp_blocks: int = 2
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0
    commitment_weight: float = 0.25
    diffusion: DiffusionConfig | None = None

    @property
    def grid(self) -> int:
        """Tokens per side for grid families."""
        return self.input_size // self.patch_size


class TrainConfig(BaseModel):
    """How a tokenizer is trained (AdamW, linear warmup then cosine decay, fixed seed)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1500, ge=1)
    max_seconds: float | None = Field(110.0, description="stop early after this much training time")
    batch_size: int = Field(32, ge=1)
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = Field(50, ge=0)
    seed: int = 0
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="held-out share of samples (the last ones)")
    max_items: int = Field(20000, description="cap on training items (samples or persons / instances)")
    threads: int | None = None


#: network sizes per preset (the paper's are ViT-B; tiny fits a 2-core CPU in about two minutes)
_SIZES: dict[str, dict[str, int]] = {
    "tiny": {
        "dim": 128,
        "enc_depth": 2,
        "dec_depth": 2,
        "heads": 4,
        "latent_dim": 32,
        "mlp_width": 256,
        "mlp_blocks": 2,
    },
    "paper": {
        "dim": 768,
        "enc_depth": 12,
        "dec_depth": 12,
        "heads": 12,
        "latent_dim": 32,
        "mlp_width": 1024,
        "mlp_blocks": 6,
    },
}


def tokenizer_name(spec: ModalitySpec) -> str:
    """The name a modality's tokenizer is saved under (shared tokenizers share it)."""
    assert spec.tokenizer is not None
    return spec.tokenizer.shared_as or spec.name


def config_from_spec(
    spec: ModalitySpec, preset: str, modalities: tuple[str, ...] | None = None
) -> TokenizerModelConfig:
    """The network configuration of ``spec``'s tokenizer in ``preset``, from the plugin's declarations only."""
    tok = spec.tokenizer
    if tok is None or tok.family == "wordpiece":
        raise ValueError(f"modality {spec.name!r} has no learned tokenizer")
    if tok.transform is None:
        raise ValueError(f"modality {spec.name!r}: its TokenizerConfig names no transform")
    layout = spec.layout(preset)
    sizes = dict(_SIZES.get(preset, _SIZES["tiny"]))
    channels = tok.input_channels or 1
    source = tuple(tok.source.split(".", 1)) if tok.source else None
    common = {
        "name": tokenizer_name(spec),
        "family": tok.family,
        "modalities": modalities or (spec.name,),
        "preset": preset,
        "transform": tok.transform,
        "source": source,
        "items": tok.items,
        "evaluator": tok.evaluator,
        "channels": channels,
        "num_classes": tok.num_classes,
        **sizes,
    }
    if tok.family in ("vit_vqvae", "divae"):
        if spec.kind != ModalityKind.IMAGE_TOKENS or layout.grid is None:
            raise ValueError(f"modality {spec.name!r}: family {tok.family} needs an image-token grid layout")
        # feature maps are already one vector per token position: a 1x1 "patch" over the grid (ml-4m's
        # patch_proj=False); pixel maps are cut into the layout's patches
        features = tok.transform == "features"
        return TokenizerModelConfig(
            **common,
            input_size=layout.grid if features else layout.image_size,
            patch_size=1 if features else layout.patch_size,
            codebook_size=layout.vocab_size,
            n_tokens=layout.grid**2,
            diffusion=DiffusionConfig() if tok.family == "divae" else None,
        )
    if tok.family == "mlp_memcodes":
        if spec.kind == ModalityKind.GLOBAL_TOKENS:
            codebook, n_tokens = layout.vocab_size, layout.max_tokens
        else:
            codebook, n_tokens = tok.codebook.get(preset), tok.tokens_per_item
        if not codebook or not n_tokens:
            raise ValueError(f"modality {spec.name!r}: mlp_memcodes needs a codebook size and a token count")
        return TokenizerModelConfig(**common, codebook_size=codebook, n_tokens=n_tokens)
    # mask_vqvae: items are item_size x item_size masks to a square grid of tokens_per_item tokens
    size, n_tokens, codebook = tok.item_size.get(preset), tok.tokens_per_item, tok.codebook.get(preset)
    if not size or not n_tokens or not codebook:
        raise ValueError(f"modality {spec.name!r}: mask_vqvae needs item_size, tokens_per_item and a codebook size")
    grid = round(n_tokens**0.5)
    if grid * grid != n_tokens or size % grid:
        raise ValueError(f"modality {spec.name!r}: {n_tokens} tokens is not a square grid dividing {size}")
    return TokenizerModelConfig(
        **common, input_size=size, patch_size=size // grid, codebook_size=codebook, n_tokens=n_tokens
    )
