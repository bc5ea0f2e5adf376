"""Tokenizer families, one module per family, each registered by one entry in :data:`FAMILIES`.

A plugin picks a family by name in its spec (``TokenizerConfig(family="divae", transform="robust_depth")``); the
family decides how that declaration becomes a network configuration (:attr:`TokenizerFamily.configure`) and which
network the configuration builds (:attr:`TokenizerFamily.network`, plus an optional second decoder such as the
diffusion decoder). Adding a family is one module that defines ``FAMILY = TokenizerFamily(...)`` and one entry here.

This package imports no torch: a family's module is imported when that family is asked for (:func:`get_family`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from fourm_core.spec import ModalitySpec
    from fourm_core.tokenizers.config import TokenizerModelConfig

__all__ = ["FAMILIES", "TokenizerFamily", "UnknownFamilyError", "check_family", "get_family", "known_families"]

#: family name -> the module defining its ``FAMILY``
FAMILIES: dict[str, str] = {
    "vit_vqvae": "fourm_core.tokenizers.families.vit_vqvae",
    "divae": "fourm_core.tokenizers.families.divae",
    "mlp_memcodes": "fourm_core.tokenizers.families.mlp_memcodes",
    "mask_vqvae": "fourm_core.tokenizers.families.mask_vqvae",
    "wordpiece": "fourm_core.tokenizers.families.wordpiece",
}


class UnknownFamilyError(ValueError):
    """A tokenizer family name no module registers."""


@dataclass(frozen=True)
class TokenizerFamily:
    """One tokenizer family.

    ``configure(spec, preset, common)`` returns the network configuration of ``spec``'s tokenizer in ``preset``;
    ``common`` holds the fields every family shares (name, transform, channels, sizes of the preset), and the family
    adds its own (input size, patch size, codebook size, token count). ``network(config, out_channels)`` builds the
    encoder-quantiser-decoder; ``decoder(config, out_channels)``, when given, a second decoder of the same tokens.
    A family without ``configure`` is not a learned tokenizer (text goes through the shared vocabulary).
    """

    name: str
    description: str
    configure: Callable[[ModalitySpec, str, dict[str, Any]], TokenizerModelConfig] | None = None
    network: Callable[[TokenizerModelConfig, int], nn.Module] | None = None
    decoder: Callable[[TokenizerModelConfig, int], nn.Module] | None = None

    @property
    def learned(self) -> bool:
        """Whether the family trains a network (False for the text vocabulary)."""
        return self.configure is not None


def known_families() -> list[str]:
    """Registered family names (no import)."""
    return sorted(FAMILIES)


def check_family(name: str) -> str:
    """``name`` when a family of that name is registered; else :class:`UnknownFamilyError` listing the known ones."""
    if name not in FAMILIES:
        raise UnknownFamilyError(f"unknown tokenizer family {name!r}; known families: {', '.join(known_families())}")
    return name


def get_family(name: str) -> TokenizerFamily:
    """The family called ``name`` (its module imported on first use)."""
    family = importlib.import_module(FAMILIES[check_family(name)]).FAMILY
    if not isinstance(family, TokenizerFamily) or family.name != name:
        raise UnknownFamilyError(f"{FAMILIES[name]} does not define FAMILY = TokenizerFamily(name={name!r}, ...)")
    return family
