"""The plugin surface: the one module a fourm plugin imports from the core.

Everything a modality plugin needs is here: the hook marker, the spec records, the contract version, the serializer
protocols and token helpers, the labeler helpers, the rendering helpers, shared class lists, and builders for the
shapes many modalities share (a teacher's feature map, a global embedding, a key-value member of a group), and the
record of a modality's official ml-4m assets (``OfficialAssets``: hub tokenizer, input normalisation, token layout).
A test fails when a plugin imports any other core module, so the core can move its insides without breaking plugins.

Importing this module imports no torch (``HubTeacher`` imports torch only when it runs; a feature-map modality
declares its timm teacher as a torch-free ``FeatureTeacherSpec``); the torch-heavy ``configure_torch_threads`` and the
picture and synthetic-world helpers load on first attribute access.

A whole modality is one declaration, usually made by a builder::

    from fourm_core import plugin as fp

    FOURM_CONTRACT = 2

    ALBEDO = fp.image_token_modality("albedo", "tok_albedo", fp.TokenizerConfig(...), vocab=(8192, 512), ...)

    fourm_register_modalities = fp.declare(ALBEDO)

The builders live in :mod:`fourm_core.plugin.builders`; each returns the records a plugin could write by hand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fourm_core.grammar import (
    Choice,
    Corners,
    Grammar,
    GrammarError,
    Item,
    Permutation,
    Repeat,
    Seq,
    Tokens,
    VocabIndex,
    Words,
    vocab_index,
)
from fourm_core.hookspecs import CONTRACT_VERSION, hookimpl
from fourm_core.labeling.api import BatchLabeler, LabelContext, Labeler, LabelError, SampleView
from fourm_core.labeling.common import CopyArray, FromModality, SourceCopy, as_float32
from fourm_core.labeling.features import FeatureTeacherSpec
from fourm_core.labeling.hub import (
    HubModel,
    HubTeacher,
    TeacherOptions,
    TeacherUnavailable,
    load_hub_model,
    teacher_options,
    teacher_status,
)
from fourm_core.plugin.builders import (
    feature_map_modality,
    global_embedding_modality,
    image_token_modality,
    key_value_modality,
    labeler,
    pixel_array,
    record_decoder,
    sequence_modality,
    source_labeler,
    teacher_labeler,
)
from fourm_core.serialization import (
    COORD_BINS,
    CropFollowing,
    FromStore,
    GroupSerializer,
    HasGrammar,
    ItemMatching,
    ItemPrompting,
    KeyValueField,
    KeyValueSerializer,
    LabelledBoxes,
    SequenceSerializer,
    SerializationError,
    TokenCursor,
    code_token,
    coord_bin,
    crop_is_identity,
    parse_code_token,
    parse_value_token,
    value_token,
)
from fourm_core.sources.coco import PANOPTIC_CLASSES, STUFF_CLASSES, THING_CLASSES
from fourm_core.sources.protocol import Source, SourceError, SourceSettings
from fourm_core.spec import (
    OFFICIAL_TEXT_TOKENIZER,
    PRESETS,
    ArraySpec,
    CommandSpec,
    DecoderEntry,
    DecoderSpec,
    Embedding,
    LabelerEntry,
    LabelerSpec,
    LazyRef,
    MaskingUnit,
    ModalityDeclaration,
    ModalityKind,
    ModalitySpec,
    Normalisation,
    OfficialAssets,
    PresetLayout,
    Requirement,
    RequirementKind,
    SerializerSpec,
    SourceSpec,
    TokenizerConfig,
    TokenizerSpec,
    Vocabulary,
    grid_presets,
    item_tokens_array,
    tokens_array,
)
from fourm_core.vocab import TextVocabulary

#: Names served lazily by :func:`__getattr__`: ``name -> (module, attribute)``; these modules pull in torch, PIL or
#: the synthetic world, which listing plugins must not pay for.
_LAZY: dict[str, tuple[str, str]] = {
    "configure_torch_threads": ("fourm_core.labeling.teachers", "configure_torch_threads"),
    **{
        name: ("fourm_core.viz.rendering", name)
        for name in (
            # what a decoder implements and receives
            "RecordDecoder",
            "RenderContext",
            # pictures: the input to draw over, text and tables, fitting to a size
            "base_picture",
            "text_picture",
            "table_picture",
            "record_rows",
            "fit_picture",
            # colours that stay the same for the same label across pictures
            "stable_colour",
            "distinct_colour",
        )
    },
    "joints_from_pose": ("fourm_core.sources.synthetic.humans", "joints_from_pose"),
    "PARENTS": ("fourm_core.sources.synthetic.humans", "PARENTS"),
    # MPJPE and PA-MPJPE (mm) of joint positions, for a pose tokenizer's evaluator
    "pose_errors": ("fourm_core.evaluation.poses", "pose_errors"),
}

__all__ = [
    # the contract
    "CONTRACT_VERSION",
    "hookimpl",
    "declare",
    "PRESETS",
    "LazyRef",
    # the spec of a modality
    "ModalitySpec",
    "ModalityKind",
    "Embedding",
    "Vocabulary",
    "MaskingUnit",
    "PresetLayout",
    "ArraySpec",
    "TokenizerConfig",
    "grid_presets",
    "tokens_array",
    "item_tokens_array",
    # its official ml-4m counterpart (hub tokenizer, normalisation, token layout)
    "OfficialAssets",
    "Normalisation",
    "OFFICIAL_TEXT_TOKENIZER",
    # its parts, declared with it or registered by their own hooks
    "ModalityDeclaration",
    "LabelerEntry",
    "LabelerSpec",
    "DecoderEntry",
    "DecoderSpec",
    "SerializerSpec",
    "TokenizerSpec",
    "SourceSpec",
    "CommandSpec",
    "Requirement",
    "RequirementKind",
    # builders for the shapes several modalities share
    "image_token_modality",
    "feature_map_modality",
    "global_embedding_modality",
    "sequence_modality",
    "key_value_modality",
    "pixel_array",
    "source_labeler",
    "labeler",
    "teacher_labeler",
    "record_decoder",
    # sequence serialization
    "SequenceSerializer",
    "SerializationError",
    "FromStore",
    "CropFollowing",
    "ItemMatching",
    "ItemPrompting",
    "LabelledBoxes",
    "GroupSerializer",
    "KeyValueField",
    "KeyValueSerializer",
    "TokenCursor",
    "TextVocabulary",
    "COORD_BINS",
    "coord_bin",
    "code_token",
    "parse_code_token",
    "value_token",
    "parse_value_token",
    "crop_is_identity",
    # grammars of sequence formats (``HasGrammar``: constrained decoding), built from fourm_core.grammar's pieces
    "HasGrammar",
    "Grammar",
    "GrammarError",
    "VocabIndex",
    "vocab_index",
    "Tokens",
    "Words",
    "Corners",
    "Seq",
    "Repeat",
    "Choice",
    "Permutation",
    "Item",
    # labeling
    "Labeler",
    "LabelContext",
    "LabelError",
    "SampleView",
    "CopyArray",
    "FromModality",
    "SourceCopy",
    "as_float32",
    "BatchLabeler",
    # hub teachers (``teacher_labeler`` declares one; its factory returns a HubTeacher subclass; a feature map's
    # timm teacher is a FeatureTeacherSpec given to ``feature_map_modality``)
    "HubModel",
    "HubTeacher",
    "FeatureTeacherSpec",
    "TeacherOptions",
    "TeacherUnavailable",
    "load_hub_model",
    "teacher_options",
    "teacher_status",
    # data sources (``fourm_register_sources``)
    "Source",
    "SourceSettings",
    "SourceError",
    # class lists
    "PANOPTIC_CLASSES",
    "STUFF_CLASSES",
    "THING_CLASSES",
    # rendering, torch and synthetic-world helpers, loaded on first use
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    """Serve the heavy helpers on first use, so ``import fourm_core.plugin`` stays torch-free."""
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def declare(*declarations: ModalityDeclaration | ModalitySpec) -> Callable[[Callable[[object], None]], None]:
    """The ``fourm_register_modalities`` hook of a plugin whose modalities are just these declarations::

        fourm_register_modalities = declare(DEPTH)

    is the same as writing the ``@hookimpl`` function that calls ``register(DEPTH)``; a plugin that decides at load
    time what to register writes that function itself."""

    @hookimpl
    def fourm_register_modalities(register: Callable[[object], None]) -> None:
        """Register the plugin's declared modalities."""
        for declaration in declarations:
            register(declaration)

    return fourm_register_modalities
