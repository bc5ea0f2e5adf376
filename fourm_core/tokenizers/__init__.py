"""Tokenizer families plugins configure: ViT VQ-VAE, diffusion decoder (DiVAE), MLP + Memcodes, mask VQ-VAE, one
module each in :mod:`fourm_core.tokenizers.families` (a registry: adding a family is one module and one entry).

A plugin declares ``TokenizerConfig(family=..., transform=...)`` in its spec; :func:`build_tokenizer` turns that into
an untrained :class:`Tokenizer`, and :func:`load_tokenizer` finds a trained one in a tokenizer directory (one
sub-folder per tokenizer name, as ``fourm tokenizer train`` writes). Importing this package is light: the
names below load on first use, so spec validation (which checks family names against
:mod:`fourm_core.tokenizers.families`) never imports torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: names served lazily from submodules (the tokenizer module imports torch)
_LAZY = {
    "Tokenizer": "fourm_core.tokenizers.tokenizer",
    "TokenizerError": "fourm_core.tokenizers.tokenizer",
    "TokenizerModelConfig": "fourm_core.tokenizers.config",
    "TrainConfig": "fourm_core.tokenizers.config",
    "config_from_spec": "fourm_core.tokenizers.config",
    "tokenizer_name": "fourm_core.tokenizers.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fourm_core.tokenizers' has no attribute {name!r}")


def build_tokenizer(spec: ModalitySpec, preset: str = "tiny") -> Tokenizer:
    """An untrained tokenizer of ``spec`` in ``preset`` (the registry's default tokenizer factory)."""
    from fourm_core.tokenizers.config import config_from_spec
    from fourm_core.tokenizers.tokenizer import Tokenizer

    return Tokenizer(config_from_spec(spec, preset))


def load_tokenizer(spec: ModalitySpec, directory: str | Path) -> Tokenizer:
    """The trained tokenizer of ``spec`` from a tokenizer directory; the error says how to train one."""
    from fourm_core.tokenizers.config import tokenizer_name
    from fourm_core.tokenizers.tokenizer import Tokenizer, TokenizerError

    path = Path(directory) / tokenizer_name(spec)
    try:
        return Tokenizer.from_pretrained(path)
    except TokenizerError:
        raise TokenizerError(
            f"modality {spec.name!r}: no trained tokenizer at {path}; run `fourm tokenizer train {spec.name}`"
        ) from None
