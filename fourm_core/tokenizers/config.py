"""Configuration of tokenizers (what is saved in ``config.json``) and of their training, built from plugin specs.

The architecture sizes per preset live here, in one table, so that every family is configured the same way: the
plugin says *what* (family, transform, channels, codebook size and token count through its preset layout), this
module says *how big*, and the family's module (:mod:`fourm_core.tokenizers.families`) adds its own shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fourm_core.spec import ModalitySpec
from fourm_core.tokenizers.families import check_family, get_family

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
    family: str = Field(..., description="a learned family of fourm_core.tokenizers.families")
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

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        return check_family(family)

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
    family = get_family(tok.family) if tok is not None else None
    if family is None or family.configure is None:
        raise ValueError(f"modality {spec.name!r} has no learned tokenizer")
    if tok is None or tok.transform is None:
        raise ValueError(f"modality {spec.name!r}: its TokenizerConfig names no transform")
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
    return family.configure(spec, preset, common)
