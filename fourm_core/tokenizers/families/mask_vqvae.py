"""The ``mask_vqvae`` tokenizer family: a ViT VQ-VAE over one item mask at a time (an instance's mask resized to
``item_size``), to a square grid of ``tokens_per_item`` tokens embedded in a text sequence."""

from __future__ import annotations

from typing import Any

from fourm_core.spec import ModalitySpec
from fourm_core.tokenizers.config import TokenizerModelConfig
from fourm_core.tokenizers.families import TokenizerFamily
from fourm_core.tokenizers.families.vit_vqvae import ViTVQVAE

__all__ = ["FAMILY"]


def _configure(spec: ModalitySpec, preset: str, common: dict[str, Any]) -> TokenizerModelConfig:
    """Items are item_size x item_size masks to a square grid of tokens_per_item tokens."""
    tok = spec.tokenizer
    assert tok is not None
    size, n_tokens, codebook = tok.item_size.get(preset), tok.tokens_per_item, tok.codebook.get(preset)
    if not size or not n_tokens or not codebook:
        raise ValueError(f"modality {spec.name!r}: mask_vqvae needs item_size, tokens_per_item and a codebook size")
    grid = round(n_tokens**0.5)
    if grid * grid != n_tokens or size % grid:
        raise ValueError(f"modality {spec.name!r}: {n_tokens} tokens is not a square grid dividing {size}")
    return TokenizerModelConfig(
        **common, input_size=size, patch_size=size // grid, codebook_size=codebook, n_tokens=n_tokens
    )


FAMILY = TokenizerFamily(
    name="mask_vqvae",
    description="a ViT VQ-VAE over one item mask at a time (instance masks), a square grid of tokens per item",
    configure=_configure,
    network=ViTVQVAE,
)
