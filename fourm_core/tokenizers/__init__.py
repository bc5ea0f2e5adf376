"""Tokenizer families plugins configure: ViT VQ-VAE, diffusion decoder (DiVAE), MLP + Memcodes, mask VQ-VAE.

A plugin declares ``TokenizerConfig(family=..., transform=...)`` in its spec; :func:`build_tokenizer` turns that into
an untrained :class:`Tokenizer`, and :func:`load_tokenizer` finds a trained one in a tokenizer directory (one
sub-folder per tokenizer name, as ``fourm tokenizer train`` writes). Importing this package imports torch; the
registry only imports it when a tokenizer is asked for.
"""

from __future__ import annotations

from pathlib import Path

from fourm_core.spec import ModalitySpec
from fourm_core.tokenizers.config import TokenizerModelConfig, TrainConfig, config_from_spec, tokenizer_name
from fourm_core.tokenizers.tokenizer import Tokenizer, TokenizerError

__all__ = [
    "Tokenizer",
    "TokenizerError",
    "TokenizerModelConfig",
    "TrainConfig",
    "build_tokenizer",
    "config_from_spec",
    "load_tokenizer",
    "tokenizer_name",
]


def build_tokenizer(spec: ModalitySpec, preset: str = "tiny") -> Tokenizer:
    """An untrained tokenizer of ``spec`` in ``preset`` (the registry's default tokenizer factory)."""
    return Tokenizer(config_from_spec(spec, preset))


def load_tokenizer(spec: ModalitySpec, directory: str | Path) -> Tokenizer:
    """The trained tokenizer of ``spec`` from a tokenizer directory; the error says how to train one."""
    path = Path(directory) / tokenizer_name(spec)
    try:
        return Tokenizer.from_pretrained(path)
    except TokenizerError:
        raise TokenizerError(
            f"modality {spec.name!r}: no trained tokenizer at {path}; run `fourm tokenizer train {spec.name}`"
        ) from None
