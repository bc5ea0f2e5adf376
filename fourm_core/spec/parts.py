"""Records of the parts a plugin contributes (labelers, codecs, decoders, tokenizers, sources, commands) and the
one-call :class:`ModalityDeclaration` that bundles a modality with its own parts.

Parts name their code lazily (``"package.module:attribute"``), so registering them imports nothing heavy. A part that
targets another plugin's modality (a second labeler for depth, say) is registered through its own hook with the
``*Spec`` record, which names the modality; inside a declaration the ``*Entry`` records leave the modality out,
since the declaration already says whose they are.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fourm_core.spec.modality import NAME_PATTERN, Frozen, LazyRef, ModalitySpec

__all__ = [
    "CommandSpec",
    "DecoderEntry",
    "DecoderSpec",
    "LabelerEntry",
    "LabelerSpec",
    "ModalityDeclaration",
    "Requirement",
    "RequirementKind",
    "SerializerSpec",
    "SourceSpec",
    "TokenizerSpec",
]


class RequirementKind(str, Enum):
    """What a labeler can require before it runs; the labeling runner checks each kind its own way."""

    #: a field the data source provides (``source:depth``): the labeler copies ground truth
    SOURCE = "source"
    #: an importable Python package (``package:timm``)
    PACKAGE = "package"
    #: another modality already labelled in the store (``modality:rgb``)
    MODALITY = "modality"
    #: a non-empty environment variable (``env:HF_TOKEN``), e.g. naming local weights
    ENV = "env"
    #: a teacher's weights on the Hugging Face hub (``hub:facebook/dinov2-base``): usable when cached, downloadable
    #: (not offline) or when random-init teachers are allowed; see :mod:`fourm_core.labeling.hub`
    HUB = "hub"


class Requirement(Frozen):
    """One thing a labeler needs, typed. Written ``"kind:target"`` in specs (``"package:timm"``); an unknown kind is
    a validation error naming the labeler, so a typo can no longer count as satisfied."""

    kind: RequirementKind
    target: str = Field(..., min_length=1, description="source field, package, modality, variable name or hub id")

    @model_validator(mode="after")
    def _hub_target_is_a_repo_id(self) -> Requirement:
        from fourm_core.hub import is_repo_id

        if self.kind == RequirementKind.HUB and not is_repo_id(self.target):
            raise ValueError(f"requirement 'hub:{self.target}': {self.target!r} is not a hub repo id (owner/name)")
        return self

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """``"kind:target"`` to a Requirement; ValueError names the known kinds when ``kind`` is not one."""
        kind, sep, target = text.partition(":")
        known = ", ".join(k.value for k in RequirementKind)
        if not sep or not target:
            raise ValueError(f"requirement {text!r} is not 'kind:target' (kinds: {known})")
        if kind not in {k.value for k in RequirementKind}:
            raise ValueError(f"requirement {text!r} has the unknown kind {kind!r} (known: {known})")
        return cls(kind=RequirementKind(kind), target=target)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.target}"


class LabelerEntry(Frozen):
    """A pseudo-labeler candidate, as listed inside a :class:`ModalityDeclaration` (the modality is implied).

    The runner calls ``factory(spec, context, **options)``: ``options`` are JSON-able settings of a generic factory
    (which source fields to copy, which teacher to run), so a plugin can reuse the core's labelers without a module of
    its own.

    ``explicit`` marks a labeler that runs only when the user names it (``--labeler modality=name``): a stand-in
    that is not the paper's teacher (classical segments for SAM, a small sentence encoder for T5) must never be
    picked in the teacher's place just because the teacher's weights are missing.
    """

    name: str = Field(..., pattern=NAME_PATTERN)
    factory: LazyRef
    default: bool = False
    explicit: bool = Field(False, description="run only when named (`--labeler modality=name`), never picked by itself")
    requires: tuple[Requirement, ...] = Field(
        (),
        description="what must be present, as Requirement or 'kind:target' (source, package, modality, env, hub)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the factory")
    description: str = ""

    @field_validator("requires", mode="before")
    @classmethod
    def _parse_requires(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            value = (value,)
        out = []
        for item in value or ():
            if isinstance(item, str):
                try:
                    item = Requirement.parse(item)
                except ValueError as exc:
                    raise ValueError(f"labeler {info.data.get('name', '?')!r}: {exc}") from None
            out.append(item)
        return tuple(out)

    @model_validator(mode="after")
    def _explicit_is_no_default(self) -> LabelerEntry:
        if self.explicit and self.default:
            raise ValueError(f"labeler {self.name!r} runs only when named (explicit), so it cannot be the default")
        return self

    def for_modality(self, modality: str) -> LabelerSpec:
        """The stand-alone spec of this labeler for ``modality`` (what the registry keeps)."""
        return LabelerSpec(modality=modality, **dict(self))


class LabelerSpec(LabelerEntry):
    """A pseudo-labeler candidate for one modality. Several may exist; configuration picks one by name."""

    modality: str = Field(..., pattern=NAME_PATTERN)


class SerializerSpec(Frozen):
    """The string codec of a sequence modality: structured value <-> the official ml-4m string format."""

    modality: str = Field(..., pattern=NAME_PATTERN)
    factory: LazyRef


class DecoderEntry(Frozen):
    """A decoder inside a :class:`ModalityDeclaration` (the modality is implied)."""

    name: str = Field("default", pattern=NAME_PATTERN)
    factory: LazyRef
    description: str = ""

    def for_modality(self, modality: str) -> DecoderSpec:
        """The stand-alone spec of this decoder for ``modality``."""
        return DecoderSpec(modality=modality, **dict(self))


class DecoderSpec(DecoderEntry):
    """Draws a modality's generated value as a picture: ``factory()`` builds an object with ``render(value,
    context)`` (see ``fourm_register_decoders`` and :mod:`fourm_core.viz.rendering`)."""

    modality: str = Field(..., pattern=NAME_PATTERN)


class TokenizerSpec(Frozen):
    """A concrete tokenizer implementation registered for one modality (training, encode, decode, save, load).

    ``factory(spec, preset, directory)`` builds the modality's tokenizer: ``spec`` is its ``ModalitySpec``, ``preset``
    the preset name, ``directory`` the tokenizer weights folder (the caller's, else ``$FOURM_TOKENIZERS``, else None
    for an untrained tokenizer); the plugin loads its weights from ``directory / <name>``.
    """

    modality: str = Field(..., pattern=NAME_PATTERN)
    factory: LazyRef
    description: str = ""


class SourceSpec(Frozen):
    """A data source: somewhere samples come from (the synthetic world, an image folder, a text corpus)."""

    name: str = Field(..., pattern=NAME_PATTERN)
    factory: LazyRef
    provides: tuple[str, ...] = Field((), description="modalities the source gives as ground truth")
    description: str = ""


class CommandSpec(Frozen):
    """A ``fourm`` sub-command a plugin adds: ``factory(parser)`` adds its arguments and returns ``run(args) -> int``
    (see ``fourm_register_commands``)."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9-]*$", description="the command's name on the command line")
    factory: LazyRef
    help: str = ""


class ModalityDeclaration(Frozen):
    """A whole modality in one record: its spec and its own parts, registered with one ``register(...)`` call in
    ``fourm_register_modalities``.

    The registry files each part as if it came through its own hook (same conflict checks, same error messages), so
    a declaration is the short way to write a plugin, not a second mechanism. Parts for *another* plugin's modality
    still go through ``fourm_register_labelers``, ``fourm_register_decoders`` and friends.
    """

    spec: ModalitySpec
    labelers: tuple[LabelerEntry, ...] = ()
    serializer: LazyRef | None = Field(None, description="factory of the sequence codec (sequence modalities)")
    decoders: tuple[DecoderEntry, ...] = ()
    tokenizer: LazyRef | None = Field(
        None, description="factory of a plugin-specific tokenizer; most modalities use spec.tokenizer's family"
    )

    @model_validator(mode="after")
    def _one_default(self) -> ModalityDeclaration:
        defaults = [lab.name for lab in self.labelers if lab.default]
        if len(defaults) > 1:
            raise ValueError(f"modality {self.spec.name!r}: labelers {defaults} are all marked default; pick one")
        return self

    @property
    def name(self) -> str:
        """The declared modality's name."""
        return self.spec.name

    def labeler_specs(self) -> list[LabelerSpec]:
        """The labelers as stand-alone specs for this modality."""
        return [lab.for_modality(self.spec.name) for lab in self.labelers]

    def serializer_spec(self) -> SerializerSpec | None:
        """The serializer as a stand-alone spec, when declared."""
        return SerializerSpec(modality=self.spec.name, factory=self.serializer) if self.serializer else None

    def decoder_specs(self) -> list[DecoderSpec]:
        """The decoders as stand-alone specs."""
        return [dec.for_modality(self.spec.name) for dec in self.decoders]

    def tokenizer_spec(self) -> TokenizerSpec | None:
        """The tokenizer as a stand-alone spec, when declared."""
        return TokenizerSpec(modality=self.spec.name, factory=self.tokenizer) if self.tokenizer else None
