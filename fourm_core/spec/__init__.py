"""Pydantic models that describe a modality and the parts a plugin contributes.

A modality plugin tells the core everything through these frozen, validated records; the core never keeps a table of
modalities of its own. Meaning lives in fields, never in key strings: the ml-4m model key (``tok_depth@224``) is
*derived* from ``key`` and the preset's resolution, it is never parsed back.

Parts that need heavy code (labelers, tokenizers, decoders, serializers, data sources) are given as lazy
``"package.module:attribute"`` references, so listing plugins or building the vocabulary imports nothing heavy.
:mod:`fourm_core.spec.modality` holds the modality itself, :mod:`fourm_core.spec.parts` the parts and the one-call
:class:`ModalityDeclaration`, :mod:`fourm_core.spec.official` a modality's official ml-4m assets.
"""

from __future__ import annotations

from fourm_core.spec.modality import (
    PRESETS,
    ArraySpec,
    Embedding,
    LazyRef,
    MaskingUnit,
    ModalityKind,
    ModalitySpec,
    PresetLayout,
    TokenizerConfig,
    Vocabulary,
    grid_presets,
    item_tokens_array,
    tokens_array,
)
from fourm_core.spec.official import OFFICIAL_TEXT_TOKENIZER, Normalisation, OfficialAssets, OfficialAssetsError
from fourm_core.spec.parts import (
    CommandSpec,
    DecoderEntry,
    DecoderSpec,
    LabelerEntry,
    LabelerSpec,
    ModalityDeclaration,
    Requirement,
    RequirementKind,
    SerializerSpec,
    SourceSpec,
    TokenizerSpec,
)

__all__ = [
    "OFFICIAL_TEXT_TOKENIZER",
    "PRESETS",
    "ArraySpec",
    "CommandSpec",
    "DecoderEntry",
    "DecoderSpec",
    "Embedding",
    "LabelerEntry",
    "LabelerSpec",
    "LazyRef",
    "MaskingUnit",
    "ModalityDeclaration",
    "ModalityKind",
    "ModalitySpec",
    "Normalisation",
    "OfficialAssets",
    "OfficialAssetsError",
    "PresetLayout",
    "Requirement",
    "RequirementKind",
    "SerializerSpec",
    "SourceSpec",
    "TokenizerConfig",
    "TokenizerSpec",
    "Vocabulary",
    "grid_presets",
    "item_tokens_array",
    "tokens_array",
]
