"""Tokenizer families plugins configure: ViT VQ-VAE, diffusion decoder (DiVAE), MLP + Memcodes, mask VQ-VAE, one
module each in :mod:`fourm_core.tokenizers.families` (a registry: adding a family is one module and one entry).

A plugin declares ``TokenizerConfig(family=..., transform=...)`` in its spec; :func:`build_tokenizer` turns that into
an untrained :class:`Tokenizer`, and :func:`load_tokenizer` finds a trained one in a tokenizer directory (one
sub-folder per tokenizer name, as ``fourm tokenizer train`` writes). :func:`from_pretrained` reads any tokenizer
folder or hub id, fourm's own or an official ml-4m one (:mod:`fourm_core.tokenizers.official`), as its
``config.json`` says. Importing this package is light: the names below load on first use, so spec validation (which
checks family names against :mod:`fourm_core.tokenizers.families`) never imports torch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fourm_core.registry import Registry
    from fourm_core.spec import ModalitySpec
    from fourm_core.tokenizers.config import TokenizerModelConfig, TrainConfig, config_from_spec, tokenizer_name
    from fourm_core.tokenizers.official.adapter import OfficialTokenizer
    from fourm_core.tokenizers.tokenizer import Tokenizer, TokenizerError

__all__ = [
    "Tokenizer",
    "TokenizerError",
    "TokenizerModelConfig",
    "TrainConfig",
    "build_tokenizer",
    "config_from_spec",
    "from_pretrained",
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


def from_pretrained(
    path_or_hub_id: str | os.PathLike[str],
    revision: str | None = None,
    *,
    modality: str | None = None,
    registry: Registry | None = None,
) -> Tokenizer | OfficialTokenizer:
    """A tokenizer from a folder or a hub id, by what its ``config.json`` holds: fourm's own (``fourm tokenizer
    train`` output) gives a :class:`Tokenizer`; an official ml-4m config (flat constructor kwargs) gives an
    :class:`~fourm_core.tokenizers.official.adapter.OfficialTokenizer` speaking ml-4m's ``tokenize`` /
    ``decode_tokens`` / ``autoencode`` / forward.

    An official tokenizer also learns its input normalisation and stored form from the modality that declares it:
    ``modality`` names it, else the installed plugin whose ``official.hub_id`` is ``path_or_hub_id``; without either
    only ml-4m's tensor methods apply. Hub ids go through :func:`fourm_core.hub.resolve` (``revision``, the hub
    cache, ``HF_HUB_OFFLINE``)."""
    from fourm_core.errors import read_json
    from fourm_core.hub import resolve
    from fourm_core.tokenizers.tokenizer import Tokenizer

    folder = resolve(path_or_hub_id, revision=revision, kind="tokenizer")
    data = read_json(folder / "config.json", "tokenizer config")
    from fourm_core.tokenizers.official.loader import is_official_tokenizer_config

    if not is_official_tokenizer_config(data):
        return Tokenizer.from_pretrained(folder)
    from fourm_core.tokenizers.official.adapter import OfficialTokenizer
    from fourm_core.tokenizers.official.resolve import load_module

    module, config = load_module(str(folder), revision=None)
    spec = _declaring_spec(str(path_or_hub_id), modality, registry)
    if spec is not None:
        return OfficialTokenizer.for_spec(module, config, spec)
    hub_id = None if Path(path_or_hub_id).expanduser().exists() else str(path_or_hub_id)
    return OfficialTokenizer.from_hub_config(module, config, hub_id=hub_id, name=Path(folder).name)


def _declaring_spec(hub_id: str, modality: str | None, registry: Registry | None) -> ModalitySpec | None:
    """The spec of ``modality``, else of the first installed modality declaring ``hub_id`` as its official one."""
    if modality is None and Path(hub_id).expanduser().exists():
        return None
    from fourm_core.registry import Registry

    registry = registry or Registry()
    if modality is not None:
        return registry.get(modality).spec
    for candidate in registry.modalities():
        if candidate.spec.official is not None and candidate.spec.official.hub_id == hub_id:
            return candidate.spec
    return None
