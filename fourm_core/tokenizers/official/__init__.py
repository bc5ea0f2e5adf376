"""ml-4m's published tokenizers (``EPFL-VILAB/4M_tokenizers_*``), state-dict compatible, with ml-4m's method names.

These are families beside fourm's own small tokenizers: a tokenizer folder whose ``config.json`` holds ml-4m's
constructor keywords (:func:`is_official_tokenizer_config`) loads through :func:`load_official_tokenizer` into
``VQVAE`` (ViT or MLP decoder; :mod:`.vq`) or ``DiVAE`` (diffusion decoder; :mod:`.divae`). Names load on first use,
so importing the package (for example to resolve which official tokenizer a modality uses) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fourm_core.tokenizers.official.loader import (
        OFFICIAL_CLASSES,
        OfficialTokenizerError,
        is_official_tokenizer_config,
        load_official_tokenizer,
    )
    from fourm_core.tokenizers.official.vq import VQ, VQVAE

__all__ = [
    "OFFICIAL_CLASSES",
    "VQ",
    "VQVAE",
    "OfficialTokenizerError",
    "is_official_tokenizer_config",
    "load_official_tokenizer",
]

_LAZY = {
    "OFFICIAL_CLASSES": "fourm_core.tokenizers.official.loader",
    "OfficialTokenizerError": "fourm_core.tokenizers.official.loader",
    "is_official_tokenizer_config": "fourm_core.tokenizers.official.loader",
    "load_official_tokenizer": "fourm_core.tokenizers.official.loader",
    "VQ": "fourm_core.tokenizers.official.vq",
    "VQVAE": "fourm_core.tokenizers.official.vq",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fourm_core.tokenizers.official' has no attribute {name!r}")
