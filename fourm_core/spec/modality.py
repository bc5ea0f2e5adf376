"""Pydantic models that describe a modality: its kind, token layouts, stored arrays and tokenizer family.

A modality plugin tells the core everything through these frozen, validated records; the core never keeps a table of
modalities of its own. Meaning lives in fields, never in key strings: the ml-4m model key (``tok_depth@224``) is
*derived* from ``key`` and the preset's resolution, it is never parsed back.

Parts that need heavy code (labelers, tokenizers, decoders, serializers, data sources) are given as lazy
``"package.module:attribute"`` references, so listing plugins or building the vocabulary imports nothing heavy.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from fourm_core.spec.official import ERROR_PREFIX, OfficialAssets, OfficialAssetsError, describe

__all__ = [
    "ArraySpec",
    "Embedding",
    "LazyRef",
    "MaskingUnit",
    "ModalityKind",
    "ModalitySpec",
    "PRESETS",
    "PresetLayout",
    "TokenizerConfig",
    "Vocabulary",
    "grid_presets",
    "item_tokens_array",
    "tokens_array",
]

#: The presets every modality must describe. ``paper`` is 4M-21 at 224 px; ``tiny`` is the CPU preset (64 px, grids of
#: at most 8x8 tokens) that tests, demos and benchmarks use.
PRESETS: tuple[str, ...] = ("paper", "tiny")

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_NAME = re.compile(NAME_PATTERN)
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_LAZY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

LazyRef = Annotated[str, Field(pattern=_LAZY.pattern, description="'package.module:attribute', imported on first use")]


class Frozen(BaseModel):
    """Base of every plugin-facing record: immutable, and a misspelled field is an error rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ModalityKind(str, Enum):
    """How a modality reaches the model."""

    #: Raw pixels cut into patches and linearly projected (RGB input). Never a target.
    PIXELS = "pixels"
    #: A square grid of discrete tokens from an image tokenizer (depth, normals, feature maps ...).
    IMAGE_TOKENS = "image_tokens"
    #: A handful of discrete tokens without spatial layout (global embeddings), learned positions.
    GLOBAL_TOKENS = "global_tokens"
    #: A sequence in the shared text vocabulary, masked by spans or chunks (caption, boxes, metadata ...).
    SEQUENCE = "sequence"
    #: A sequence of continuous vectors projected linearly (T5 caption embeddings). Never a target.
    SEQUENCE_EMBEDDING = "sequence_embedding"


class Embedding(str, Enum):
    """Position embedding the model builds for the modality."""

    SINCOS_2D = "2d"
    SINCOS_1D = "1d"
    LEARNED = "learned"


class MaskingUnit(str, Enum):
    """The atom that 4M masking keeps or drops."""

    TOKEN = "token"  # image tokens: random permutation of grid positions
    SPAN = "span"  # sequences: T5-style span masking with sentinels
    CHUNK = "chunk"  # chunked sequences (metadata): whole ``v1=type v0=value`` pairs


class Vocabulary(str, Enum):
    """Where a modality's token ids come from."""

    OWN = "own"  # its own tokenizer codebook, ``vocab_size`` ids
    TEXT = "text"  # the shared WordPiece text vocabulary (size known once the vocabulary is built)
    NONE = "none"  # continuous input (pixels, embeddings)


_EXPECTED_EMBEDDING = {
    ModalityKind.PIXELS: Embedding.SINCOS_2D,
    ModalityKind.IMAGE_TOKENS: Embedding.SINCOS_2D,
    ModalityKind.GLOBAL_TOKENS: Embedding.LEARNED,
    ModalityKind.SEQUENCE: Embedding.SINCOS_1D,
    ModalityKind.SEQUENCE_EMBEDDING: Embedding.SINCOS_1D,
}
_EXPECTED_VOCABULARY = {
    ModalityKind.PIXELS: Vocabulary.NONE,
    ModalityKind.IMAGE_TOKENS: Vocabulary.OWN,
    ModalityKind.GLOBAL_TOKENS: Vocabulary.OWN,
    ModalityKind.SEQUENCE: Vocabulary.TEXT,
    ModalityKind.SEQUENCE_EMBEDDING: Vocabulary.NONE,
}
#: What ``masking`` defaults to when a spec leaves it out: the first choice of ``_EXPECTED_MASKING``.
_DEFAULT_MASKING = {
    ModalityKind.PIXELS: MaskingUnit.TOKEN,
    ModalityKind.IMAGE_TOKENS: MaskingUnit.TOKEN,
    ModalityKind.GLOBAL_TOKENS: MaskingUnit.TOKEN,
    ModalityKind.SEQUENCE: MaskingUnit.SPAN,
    ModalityKind.SEQUENCE_EMBEDDING: MaskingUnit.SPAN,
}
_EXPECTED_MASKING = {
    ModalityKind.PIXELS: {MaskingUnit.TOKEN},
    ModalityKind.IMAGE_TOKENS: {MaskingUnit.TOKEN},
    ModalityKind.GLOBAL_TOKENS: {MaskingUnit.TOKEN},
    ModalityKind.SEQUENCE: {MaskingUnit.SPAN, MaskingUnit.CHUNK},
    ModalityKind.SEQUENCE_EMBEDDING: {MaskingUnit.SPAN},
}


class PresetLayout(Frozen):
    """Token layout of a modality in one preset.

    For grid modalities ``max_tokens == (image_size // patch_size) ** 2`` is checked; for global tokens the grid is
    virtual (ml-4m uses patch 56 at 224 px to get 4x4 = 16 positions) and only ``max_tokens`` matters.
    """

    image_size: int | None = Field(None, gt=0, description="side of the square image the tokens cover, in pixels")
    patch_size: int | None = Field(None, gt=0, description="pixels per token side")
    max_tokens: int = Field(..., gt=0, description="tokens the model reserves (sequences: without the EOS slot)")
    vocab_size: int | None = Field(None, gt=1, description="codebook size for modalities with their own vocabulary")
    feature_dim: int | None = Field(None, gt=0, description="width of continuous inputs (T5 embeddings)")

    @property
    def grid(self) -> int | None:
        """Tokens per side of the token grid, when the layout is a grid."""
        if self.image_size is None or self.patch_size is None:
            return None
        return self.image_size // self.patch_size


class ArraySpec(Frozen):
    """One array a modality stores per sample in the aligned store.

    ``shape`` is documentation as much as a check: integers are fixed, ``H``/``W`` are the preset's image size, other
    symbols (``N`` instances, ``L`` tokens, ``C`` channels) are named dimensions. ``ragged`` arrays vary in their first
    dimension per sample and are stored as values + offsets; ``json`` and ``text`` arrays are always ragged.
    """

    name: str = Field(..., pattern=_NAME.pattern)
    dtype: Literal["uint8", "int16", "int32", "int64", "float16", "float32", "bool", "json", "text"]
    shape: tuple[int | str, ...] = ()
    ragged: bool = False
    form: Literal["raw", "tokens"] = Field(
        "raw", description="raw arrays are written by the labeler, token arrays by the tokenizer (fourm data tokenize)"
    )
    description: str = ""

    @model_validator(mode="after")
    def _text_is_ragged(self) -> ArraySpec:
        if self.dtype in ("json", "text") and (self.shape or not self.ragged):
            raise ValueError(f"array {self.name!r}: json/text arrays are ragged scalars (shape=(), ragged=True)")
        return self


class TokenizerConfig(Frozen):
    """Which generic tokenizer family a modality uses, configured by the plugin.

    ``shared_as`` names a tokenizer instance several modalities share (Canny and SAM edges share ``edge``, as in the
    paper); the family code lives in ``fourm_core.tokenizers`` and never names a modality.
    """

    family: str = Field(..., description="a tokenizer family of fourm_core.tokenizers.families (one module each)")
    shared_as: str | None = Field(None, pattern=_NAME.pattern)
    loss: str | None = Field(None, description="reconstruction loss, e.g. smooth_l1, mse, cross_entropy, cosine")
    input_channels: int | None = Field(None, gt=0)
    num_classes: int | None = Field(None, gt=0, description="for class maps reconstructed with cross-entropy")
    codebook: dict[str, int] = Field(
        default_factory=dict,
        description="codebook size per preset for tokenizers embedded in text sequences (pose, SAM masks); image "
        "token modalities use the preset layout's vocab_size instead",
    )
    tokens_per_item: int | None = Field(None, gt=0, description="tokens per pose / per instance mask")
    transform: (
        Literal[
            "color", "robust_depth", "unit_vectors", "classes", "edges", "features", "embedding", "vectors", "masks"
        ]
        | None
    ) = Field(
        None,
        description="generic input handling in fourm_core.tokenizers.transforms: how stored arrays become the "
        "tokenizer's tensors and back, its reconstruction loss and its bound metrics",
    )
    source: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$",
        description="'modality.array' the tokenizer reads (default: this modality's first raw array), for token "
        "modalities made from another modality's data",
    )
    items: LazyRef | None = Field(
        None,
        description="for tokenizers of parts of a sample (one pose per person, one mask per instance): "
        "'module:function' mapping (raw sample dict, item size) to an (N, ...) array of items",
    )
    evaluator: LazyRef | None = Field(
        None,
        description="'module:function' adding modality-specific bound metrics: f(true, reconstructed) -> dict",
    )
    item_size: dict[str, int] = Field(
        default_factory=dict, description="side of the item grid per preset (mask tokenizer: 64 paper, 32 tiny)"
    )
    notes: str = ""

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        # the family table imports no torch, so validating a spec stays light
        from fourm_core.tokenizers.families import check_family

        return check_family(value)


class ModalitySpec(Frozen):
    """Everything the core needs to know about one modality.

    Plugins build these in ``fourm_register_modalities``. A spec is pure data: no tensors, no imports of heavy code.
    """

    name: str = Field(..., pattern=_NAME.pattern, description="plugin-level modality name, a lowercase identifier")
    key: str = Field(..., pattern=_KEY.pattern, description="ml-4m key stem without the '@resolution' suffix")
    key_has_resolution: bool = Field(False, description="append '@<image_size>' to form the model key, as ml-4m does")
    kind: ModalityKind
    embedding: Embedding = Field(
        Embedding.SINCOS_2D, description="decided by kind; defaults to the kind's embedding when left out"
    )
    vocabulary: Vocabulary = Field(
        Vocabulary.OWN, description="decided by kind; defaults to the kind's vocabulary when left out"
    )
    masking: MaskingUnit = Field(
        MaskingUnit.TOKEN,
        description="defaults from kind (token for grids and global tokens, span for sequences); chunk is the one "
        "choice a spec makes (chunk-masked sequences)",
    )
    presets: dict[str, PresetLayout]
    input_only: bool = False
    target_only: bool = False
    group: str | None = Field(
        None, pattern=_NAME.pattern, description="modalities sharing one model key name their group"
    )
    depends_on: tuple[str, ...] = Field((), description="modalities whose data this one is computed from (hard)")
    uses: tuple[str, ...] = Field((), description="modalities used when present (ordering only, soft)")
    vocab_words: tuple[str, ...] = Field(
        (), description="whole words this modality's strings need as single tokens (class names, keywords)"
    )
    chunk_tags: tuple[str, ...] = Field(
        (), description="for chunk-masked group members: the leading token of every chunk this member owns"
    )
    tokenizer: TokenizerConfig | None = None
    class_names: tuple[str, ...] = Field(
        (), description="for class-valued modalities: the name of each stored class value (index = value)"
    )
    class_sets: dict[str, tuple[int, ...]] = Field(
        default_factory=dict,
        description="named sets of class values other plugins may use (e.g. walkable, countable), by stored value",
    )
    storage: tuple[ArraySpec, ...] = ()
    official: OfficialAssets | None = Field(
        None, description="the official ml-4m counterpart: hub tokenizer, input normalisation, token layout"
    )
    description: str = ""

    @field_validator("official", mode="before")
    @classmethod
    def _official(cls, value: Any, info: ValidationInfo) -> Any:
        """A dict is validated here so that its error is one line naming the modality and the field."""
        if isinstance(value, dict):
            try:
                return OfficialAssets.model_validate(value)
            except (ValidationError, OfficialAssetsError) as exc:
                reason = describe(exc) if isinstance(exc, ValidationError) else str(exc).removeprefix(ERROR_PREFIX)
                raise ValueError(f"official assets of {info.data.get('name', '?')!r}: {reason}") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_kind(cls, data: Any) -> Any:
        """Fill ``embedding``, ``vocabulary`` and ``masking`` from ``kind`` when a spec leaves them out: the kind
        decides them, so restating them in every plugin was noise. Explicit values are still checked below."""
        if isinstance(data, dict) and "kind" in data:
            try:
                kind = ModalityKind(data["kind"])
            except ValueError:
                return data  # the field validator reports the bad kind
            data = dict(data)
            data.setdefault("embedding", _EXPECTED_EMBEDDING[kind])
            data.setdefault("vocabulary", _EXPECTED_VOCABULARY[kind])
            data.setdefault("masking", _DEFAULT_MASKING[kind])
        return data

    @field_validator("depends_on", "uses")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _NAME.match(item):
                raise ValueError(f"dependency {item!r} is not a modality name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModalitySpec:
        problems: list[str] = []
        if self.embedding != _EXPECTED_EMBEDDING[self.kind]:
            problems.append(f"kind {self.kind.value} needs embedding {_EXPECTED_EMBEDDING[self.kind].value}")
        if self.vocabulary != _EXPECTED_VOCABULARY[self.kind]:
            problems.append(f"kind {self.kind.value} needs vocabulary {_EXPECTED_VOCABULARY[self.kind].value}")
        if self.masking not in _EXPECTED_MASKING[self.kind]:
            allowed = ", ".join(sorted(m.value for m in _EXPECTED_MASKING[self.kind]))
            problems.append(f"kind {self.kind.value} masks by {allowed}, not {self.masking.value}")
        if self.kind in (ModalityKind.PIXELS, ModalityKind.SEQUENCE_EMBEDDING) and not self.input_only:
            problems.append(f"kind {self.kind.value} has no output head, so it must be input_only")
        if self.input_only and self.target_only:
            problems.append("a modality cannot be both input_only and target_only")
        if self.name in self.depends_on or self.name in self.uses:
            problems.append("a modality cannot depend on itself")
        if self.masking == MaskingUnit.CHUNK and not self.chunk_tags:
            problems.append("chunk masking needs chunk_tags (the leading token of each chunk)")
        for set_name, members in self.class_sets.items():
            outside = [v for v in members if not 0 <= v < len(self.class_names)]
            if outside:
                problems.append(f"class set {set_name!r} has values {outside[:5]} outside class_names")
        missing = [p for p in PRESETS if p not in self.presets]
        if missing:
            problems.append(f"missing preset layouts: {', '.join(missing)}")
        for preset, layout in self.presets.items():
            problems.extend(f"preset {preset}: {p}" for p in self._layout_problems(layout))
        problems.extend(f"official: {p}" for p in self._official_problems())
        if problems:
            raise ValueError(f"modality {self.name!r}: " + "; ".join(problems))
        return self

    def _layout_problems(self, layout: PresetLayout) -> list[str]:
        problems = []
        grid_kind = self.kind in (ModalityKind.PIXELS, ModalityKind.IMAGE_TOKENS)
        if grid_kind:
            if layout.image_size is None or layout.patch_size is None:
                problems.append("grid modalities need image_size and patch_size")
            elif layout.image_size % layout.patch_size:
                problems.append("image_size must be a multiple of patch_size")
            elif (grid := layout.image_size // layout.patch_size) ** 2 != layout.max_tokens:
                problems.append(f"max_tokens {layout.max_tokens} != grid {grid}x{grid}")
        if self.key_has_resolution and layout.image_size is None:
            problems.append("a key with resolution needs image_size")
        if self.vocabulary == Vocabulary.OWN and layout.vocab_size is None:
            problems.append("a modality with its own vocabulary needs vocab_size")
        if self.vocabulary != Vocabulary.OWN and layout.vocab_size is not None:
            problems.append("vocab_size is only for modalities with their own vocabulary")
        if self.vocabulary == Vocabulary.OWN and layout.vocab_size and layout.vocab_size > 2**15:
            problems.append("vocab_size above 32768 does not fit the int16 token store")
        if self.kind == ModalityKind.SEQUENCE_EMBEDDING and layout.feature_dim is None:
            problems.append("sequence embeddings need feature_dim")
        return problems

    def _official_problems(self) -> list[str]:
        """The declared official assets must fit the kind and the paper layout (the official model is 224 px)."""
        official = self.official
        if official is None or "paper" not in self.presets:
            return []
        problems = []
        paper = self.presets["paper"]
        has_own_tokens = self.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS)
        if official.hub_id is not None and self.kind in (ModalityKind.PIXELS, ModalityKind.SEQUENCE_EMBEDDING):
            problems.append(f"kind {self.kind.value} has no tokenizer, so no hub_id")
        if official.hub_id is not None and self.kind == ModalityKind.SEQUENCE and self.tokenizer is None:
            problems.append("a sequence with an official item tokenizer needs a tokenizer config for its items")
        if has_own_tokens and official.hub_id is None:
            problems.append(f"kind {self.kind.value} needs the hub_id of its official tokenizer")
        if official.grid is not None and paper.grid is not None and official.grid != paper.grid:
            problems.append(f"grid {official.grid} != the paper preset's {paper.grid}x{paper.grid}")
        if self.kind == ModalityKind.GLOBAL_TOKENS and official.tokens_per_item not in (None, paper.max_tokens):
            problems.append(f"tokens_per_item {official.tokens_per_item} != the paper preset's {paper.max_tokens}")
        if official.text_tokenizer is not None and self.kind != ModalityKind.SEQUENCE:
            problems.append(f"kind {self.kind.value} is not written in a text tokenizer")
        return problems

    def layout(self, preset: str) -> PresetLayout:
        """The token layout for ``preset``; a clear error names the modality when the preset is unknown."""
        try:
            return self.presets[preset]
        except KeyError:
            known = ", ".join(sorted(self.presets))
            raise KeyError(f"modality {self.name!r} has no preset {preset!r} (known: {known})") from None

    def model_key(self, preset: str = "paper") -> str:
        """The ml-4m compatible model key in ``preset``: ``tok_depth@224``, ``caption``, ``metadata``."""
        if self.key_has_resolution:
            return f"{self.key}@{self.layout(preset).image_size}"
        return self.key

    @property
    def is_target(self) -> bool:
        """Whether the model can predict this modality (has a decoder embedding and output head)."""
        return not self.input_only


def item_tokens_array(items: str) -> ArraySpec:
    """The token array of a modality whose tokenizer works per item (a pose per person, a mask per instance):
    ``(N, L)`` int16, ragged over the items of each sample, written by ``fourm data tokenize``."""
    return ArraySpec(
        name="tokens",
        dtype="int16",
        shape=("N", "L"),
        ragged=True,
        form="tokens",
        description=f"tokens per item, in the order of {items}",
    )


def grid_presets(
    paper_vocab: int | None,
    tiny_vocab: int | None,
    *,
    paper_patch: int = 16,
    tiny_patch: int = 8,
    paper_size: int = 224,
    tiny_size: int = 64,
) -> dict[str, PresetLayout]:
    """Layouts of a grid modality in both presets: paper 224 px / patch 16 (14x14 tokens), tiny 64 px / patch 8 (8x8).

    A convenience for plugin authors; DINOv2 and ImageBind pass ``paper_patch=14`` to get ml-4m's 16x16 grid.
    """
    return {
        "paper": PresetLayout(
            image_size=paper_size,
            patch_size=paper_patch,
            max_tokens=(paper_size // paper_patch) ** 2,
            vocab_size=paper_vocab,
        ),
        "tiny": PresetLayout(
            image_size=tiny_size,
            patch_size=tiny_patch,
            max_tokens=(tiny_size // tiny_patch) ** 2,
            vocab_size=tiny_vocab,
        ),
    }


def tokens_array(description: str = "K crops x L tokens") -> ArraySpec:
    """The token array of a grid or global-token modality: ``(K, L)`` int16, K crops of L tokens each, written by
    ``fourm data tokenize`` (every tokenized image modality stores exactly this, so plugins share one definition)."""
    return ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description=description)
