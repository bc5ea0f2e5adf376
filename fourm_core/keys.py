"""The typed key table: one frozen :class:`KeyInfo` per model key, the facts the network, masking, collation, the
sampler and evaluation need about it.

ml-4m passes these facts around as an untyped ``modality_info`` dict of dicts whose ``type`` strings every consumer
compares by hand. fourm builds the table once, from the registry for a preset (:meth:`KeyTable.from_registry`) or
from an official ``config.json``'s domains, image and patch size (:meth:`KeyTable.from_registry` with
``image_size`` / ``patch_size``, as :meth:`fourm_core.model.config.FourMConfig.from_official` does), and hands out typed
records; the dict form exists only at the ml-4m boundary (:meth:`KeyInfo.as_official` /
:meth:`KeyInfo.from_official`).

This module imports no torch: the registry, the CLI and the checkpoint converters use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fourm_core.spec import Embedding, MaskingUnit, ModalityKind, ModalitySpec, Vocabulary

__all__ = ["ID_SPACE", "KIND_DEFAULTS", "KeyInfo", "KeyTable", "KeyTableError", "modality_id"]

#: Model-facing modality ids are 15-bit, stored in int16 ``mod_mask`` tensors (ml-4m's convention).
ID_SPACE = 2**15
#: The text vocabulary size a table assumes before the shared WordPiece vocabulary is built (ml-4m's 30,000).
DEFAULT_TEXT_VOCAB = 30000
#: The patch of the paper preset's grid keys; a key whose spec uses another one (DINOv2: 14) keeps it when an
#: official config changes the resolution.
STANDARD_PATCH = 16
#: What a kind decides when a key is described without a spec (ml-4m ``modality_info`` dicts, hand-made test
#: tables): its position embedding, where its ids come from and its default masking unit.
KIND_DEFAULTS: dict[ModalityKind, tuple[Embedding, Vocabulary, MaskingUnit]] = {
    ModalityKind.PIXELS: (Embedding.SINCOS_2D, Vocabulary.NONE, MaskingUnit.TOKEN),
    ModalityKind.IMAGE_TOKENS: (Embedding.SINCOS_2D, Vocabulary.OWN, MaskingUnit.TOKEN),
    ModalityKind.GLOBAL_TOKENS: (Embedding.LEARNED, Vocabulary.OWN, MaskingUnit.TOKEN),
    ModalityKind.SEQUENCE: (Embedding.SINCOS_1D, Vocabulary.TEXT, MaskingUnit.SPAN),
    ModalityKind.SEQUENCE_EMBEDDING: (Embedding.SINCOS_1D, Vocabulary.NONE, MaskingUnit.SPAN),
}


class KeyTableError(ValueError):
    """A key table that cannot be built: an unknown key in an official config, an inconsistent override."""


def modality_id(model_key: str) -> int:
    """ml-4m's stable id of a model key (``sha256 % 2**15``): installing another plugin never changes it."""
    return int(hashlib.sha256(model_key.encode("utf-8")).hexdigest(), 16) % ID_SPACE


class KeyInfo(BaseModel):
    """Everything the model side knows about one model key (``tok_depth@224``, ``caption``, ``metadata`` ...).

    Group members (the three metadata plugins share ``metadata``) are one key; ``members`` names them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    kind: ModalityKind
    embedding: Embedding
    masking: MaskingUnit
    vocabulary: Vocabulary
    vocab_size: int | None = Field(None, description="codebook size, or the text vocabulary size for sequences")
    max_tokens: int = Field(..., gt=0)
    image_size: int | None = None
    patch_size: int | None = None
    feature_dim: int | None = None
    num_channels: int = 3
    id: int = Field(..., ge=0, lt=ID_SPACE)
    input: bool = True
    target: bool = True
    members: tuple[str, ...] = ()
    decoder_positions: int | None = Field(
        None,
        gt=0,
        description="sequence targets at or past this position share position 0 (ml-4m's decoder embedding "
        "max_length); None: max_tokens",
    )

    # ---------------------------------------------------------------- what a consumer asks
    @property
    def is_sequence(self) -> bool:
        """Sequences (text tokens or continuous vectors) carry an EOS slot and decode left to right."""
        return self.kind in (ModalityKind.SEQUENCE, ModalityKind.SEQUENCE_EMBEDDING)

    @property
    def is_grid(self) -> bool:
        """Pixels and image tokens lie on a square grid of ``grid`` x ``grid`` positions."""
        return self.kind in (ModalityKind.PIXELS, ModalityKind.IMAGE_TOKENS)

    @property
    def is_tokens(self) -> bool:
        """Discrete ids the model can predict (image, global or text tokens)."""
        return self.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS, ModalityKind.SEQUENCE)

    @property
    def is_continuous(self) -> bool:
        """Inputs given as numbers, not ids (pixels, T5 embeddings)."""
        return self.vocabulary == Vocabulary.NONE

    @property
    def is_embedding(self) -> bool:
        """Continuous sequence rows (T5 embeddings): masked per row, never targets."""
        return self.kind == ModalityKind.SEQUENCE_EMBEDDING

    @property
    def is_pixels(self) -> bool:
        """Raw pixels, patched and projected: an input only."""
        return self.kind == ModalityKind.PIXELS

    @property
    def is_global(self) -> bool:
        """A handful of tokens without spatial layout (global embeddings such as DINOv2's CLS)."""
        return self.kind == ModalityKind.GLOBAL_TOKENS

    @property
    def is_image_tokens(self) -> bool:
        """Tokens on a square grid that can be predicted (image tokens, not pixels, not global tokens)."""
        return self.kind == ModalityKind.IMAGE_TOKENS

    @property
    def grid(self) -> int | None:
        """Positions per side of a grid key."""
        if self.image_size is None or self.patch_size is None:
            return None
        return self.image_size // self.patch_size

    # ---------------------------------------------------------------- building
    @classmethod
    def from_spec(
        cls,
        key: str,
        spec: ModalitySpec,
        preset: str,
        *,
        members: Iterable[str] = (),
        text_vocab_size: int = DEFAULT_TEXT_VOCAB,
        image_size: int | None = None,
        patch_size: int | None = None,
    ) -> KeyInfo:
        """The key of ``spec`` in ``preset``; ``image_size`` / ``patch_size`` re-lay a grid key at another
        resolution (official configs), keeping the spec's patch-to-image ratio for keys with their own patch."""
        layout = spec.layout(preset)
        size, patch, max_tokens = layout.image_size, layout.patch_size, layout.max_tokens
        if image_size is not None and size is not None and spec.kind != ModalityKind.GLOBAL_TOKENS:
            # an official config re-lays grid keys at its resolution; a key with a patch of its own (DINOv2's 14)
            # keeps it, the others take the config's patch (ml-4m's FM wrapper does the same)
            if patch_size is not None and patch == STANDARD_PATCH:
                patch = patch_size
            size = image_size
            if patch:
                max_tokens = (size // patch) ** 2
        if spec.vocabulary == Vocabulary.OWN:
            vocab = layout.vocab_size
        elif spec.vocabulary == Vocabulary.TEXT:
            vocab = text_vocab_size
        else:
            vocab = None
        return cls(
            key=key,
            kind=spec.kind,
            embedding=spec.embedding,
            masking=spec.masking,
            vocabulary=spec.vocabulary,
            vocab_size=vocab,
            max_tokens=max_tokens,
            image_size=size,
            patch_size=patch,
            feature_dim=layout.feature_dim,
            id=modality_id(key),
            input=not spec.target_only,
            target=spec.is_target,
            members=tuple(members) or (spec.name,),
        )

    @classmethod
    def make(cls, key: str, kind: ModalityKind | str, max_tokens: int, **fields: Any) -> KeyInfo:
        """A key described by hand (tests, benchmarks): embedding, vocabulary and masking from the kind
        (:data:`KIND_DEFAULTS`), ``id`` from the key, ``target`` False for kinds without an output head; any
        field may be given."""
        kind = ModalityKind(kind)
        embedding, vocabulary, masking = KIND_DEFAULTS[kind]
        defaults: dict[str, Any] = {
            "embedding": embedding,
            "vocabulary": vocabulary,
            "masking": masking,
            "id": modality_id(key),
            "target": kind not in (ModalityKind.PIXELS, ModalityKind.SEQUENCE_EMBEDDING),
            "members": (key,),
        }
        return cls(key=key, kind=kind, max_tokens=max_tokens, **{**defaults, **fields})

    @classmethod
    def from_official(cls, key: str, info: Mapping[str, Any]) -> KeyInfo:
        """The key of an ml-4m style ``modality_info`` entry (what :meth:`as_official` writes, or a fourm
        ``config.json`` from before the key table): ``type`` and ``pos`` name the kind and embedding, the rest
        comes from the kind (:meth:`make`). Unknown entries are errors naming them."""
        known = {"type", "pos", "vocab_size", "max_tokens", "image_size", "patch_size", "feature_dim"}
        known |= {"num_channels", "id", "input", "target"}
        unknown = sorted(set(info) - known)
        if unknown:
            raise KeyTableError(f"model key {key!r}: unknown modality_info entries {unknown}")
        fields = {k: v for k, v in info.items() if k not in ("type", "pos", "max_tokens") and v is not None}
        if "pos" in info:
            fields["embedding"] = Embedding(info["pos"])
        return cls.make(key, info["type"], int(info["max_tokens"]), **fields)

    def as_official(self) -> dict[str, Any]:
        """ml-4m's ``modality_info`` entry for this key (type names as fourm spells them)."""
        return {
            "type": self.kind.value,
            "pos": self.embedding.value,
            "vocab_size": self.vocab_size,
            "max_tokens": self.max_tokens,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "feature_dim": self.feature_dim,
            "num_channels": self.num_channels,
            "id": self.id,
            "input": self.input,
            "target": self.target,
        }


class KeyTable(Mapping[str, KeyInfo]):
    """``{model_key: KeyInfo}`` in a fixed order (the registry's dependency order), immutable once built."""

    def __init__(self, infos: Iterable[KeyInfo]) -> None:
        self._infos: dict[str, KeyInfo] = {}
        for info in infos:
            if info.key in self._infos:
                raise KeyTableError(f"model key {info.key!r} appears twice in the key table")
            self._infos[info.key] = info

    def __getitem__(self, key: str) -> KeyInfo:
        try:
            return self._infos[key]
        except KeyError:
            known = ", ".join(self._infos) or "none"
            raise KeyError(f"no model key {key!r} in the key table (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __repr__(self) -> str:
        return f"KeyTable({list(self._infos)})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyTable):
            return list(self._infos.items()) == list(other._infos.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- views
    def inputs(self) -> list[str]:
        """Keys the encoder can see."""
        return [k for k, v in self._infos.items() if v.input]

    def targets(self) -> list[str]:
        """Keys the decoder can predict."""
        return [k for k, v in self._infos.items() if v.target]

    def subset(self, keys: Iterable[str]) -> KeyTable:
        """The table restricted to ``keys`` (in this table's order); an unknown key is an error naming it."""
        wanted = set(keys)
        unknown = sorted(wanted - set(self._infos))
        if unknown:
            raise KeyTableError(f"unknown model keys {unknown} (known: {', '.join(self._infos)})")
        return KeyTable(v for k, v in self._infos.items() if k in wanted)

    def by_id(self, mod_id: int) -> KeyInfo:
        """The key whose ``id`` is ``mod_id`` (decoding ``mod_mask`` tensors)."""
        for info in self._infos.values():
            if info.id == mod_id:
                return info
        raise KeyError(f"no model key has id {mod_id}")

    # ---------------------------------------------------------------- building
    @classmethod
    def from_registry(
        cls,
        registry: Any,
        preset: str,
        *,
        text_vocab_size: int = DEFAULT_TEXT_VOCAB,
        image_size: int | None = None,
        patch_size: int | None = None,
        keys: Iterable[str] | None = None,
    ) -> KeyTable:
        """Every model key the registry knows in ``preset`` (or the ``keys`` named). Group members share a key; the
        first member's spec describes it. ``image_size``/``patch_size`` re-lay grid keys (official configs)."""
        model_keys = registry.model_keys(preset)
        wanted = None if keys is None else list(keys)
        if wanted is not None:
            unknown = [k for k in wanted if k not in model_keys]
            if unknown:
                known = ", ".join(model_keys)
                raise KeyTableError(f"no installed plugin provides model keys {unknown} (installed: {known})")
        infos = []
        for key, members in model_keys.items():
            if wanted is not None and key not in wanted:
                continue
            info = KeyInfo.from_spec(
                key,
                members[0].spec,
                preset,
                members=[m.name for m in members],
                text_vocab_size=text_vocab_size,
                image_size=image_size,
                patch_size=patch_size,
            )
            # a group key is an input (target) when any member can be one
            flags = {
                "input": any(not m.spec.target_only for m in members),
                "target": any(m.spec.is_target for m in members),
            }
            infos.append(info.model_copy(update=flags))
        return cls(infos)

    @classmethod
    def from_modality_info(cls, modality_info: Mapping[str, Mapping[str, Any]]) -> KeyTable:
        """The table of an ml-4m style ``modality_info`` dict of dicts (see :meth:`KeyInfo.from_official`)."""
        return cls(KeyInfo.from_official(k, v) for k, v in modality_info.items())

    @classmethod
    def coerce(cls, value: KeyTable | Iterable[Any] | Mapping[str, Any]) -> KeyTable:
        """A table from what callers hold: a table, KeyInfos, ``{key: KeyInfo}``, ``{key: ml-4m dict}`` or the
        JSON list :meth:`to_json` writes."""
        if isinstance(value, KeyTable):
            return value
        if isinstance(value, Mapping):
            entries: dict[str, Any] = dict(value)
            if all(isinstance(v, KeyInfo) for v in entries.values()):
                return cls(entries.values())
            return cls.from_modality_info(entries)
        return cls(v if isinstance(v, KeyInfo) else KeyInfo.model_validate(v) for v in value)

    def to_json(self) -> list[dict[str, Any]]:
        """A JSON-ready list (kept in order) that :meth:`from_json` reads back to an equal table."""
        return [info.model_dump(mode="json") for info in self._infos.values()]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]]) -> KeyTable:
        """The table written by :meth:`to_json`; unknown or missing fields are errors naming the key."""
        return cls(KeyInfo.model_validate(dict(item)) for item in data)

    def as_official(self) -> dict[str, dict[str, Any]]:
        """ml-4m's ``modality_info`` dict of dicts, for the official boundary only."""
        return {k: v.as_official() for k, v in self._infos.items()}
