"""The ``wordpiece`` family: text modalities are tokenized by the shared WordPiece vocabulary (``fourm vocab
build``, :mod:`fourm_core.vocab`), not by a learned network, so the family has nothing to configure or train."""

from __future__ import annotations

from fourm_core.tokenizers.families import TokenizerFamily

__all__ = ["FAMILY"]

FAMILY = TokenizerFamily(
    name="wordpiece",
    description="the shared WordPiece text vocabulary (fourm vocab build); no learned network",
)
