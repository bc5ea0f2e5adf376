"""The typed facade the rest of fourm uses instead of ``pm.hook.*``: :class:`Registry` collects what the plugins
registered (through :mod:`~fourm_core.registry.discovery`), checks it across plugins (through
:mod:`~fourm_core.registry.validation`) and answers every question the core asks about modalities and their parts.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any

from fourm_core.keys import modality_id
from fourm_core.registry.discovery import PluginError, PluginLoader, PluginRecord, resolve_ref
from fourm_core.registry.validation import check_keys, check_requirements, dependency_order
from fourm_core.spec import (
    DecoderSpec,
    LabelerSpec,
    MaskingUnit,
    ModalityDeclaration,
    ModalitySpec,
    SerializerSpec,
    SourceSpec,
    TokenizerSpec,
)

__all__ = ["OFFICIAL_TOKENIZERS", "Modality", "Registry"]

#: The tokenizer directory that selects the plugins' official ml-4m tokenizers (the value of
#: :data:`fourm_core.tokenizers.official.resolve.OFFICIAL`, restated so that the registry imports no torch)
OFFICIAL_TOKENIZERS = "official"


@dataclass(frozen=True, eq=False)
class Modality:
    """A registered modality: its validated spec, who provides it, and lazy access to its parts."""

    spec: ModalitySpec
    plugin: PluginRecord
    registry: Registry = field(repr=False)

    @property
    def name(self) -> str:
        """Plugin-level name, e.g. ``depth``."""
        return self.spec.name

    def model_key(self, preset: str = "paper") -> str:
        """ml-4m model key in ``preset`` (``tok_depth@224``)."""
        return self.spec.model_key(preset)

    def id(self, preset: str = "paper") -> int:
        """Stable model-facing id (shared by the members of a group, since they share the key)."""
        return modality_id(self.model_key(preset))

    def group_members(self) -> list[Modality]:
        """All modalities sharing this one's model key (itself included), in registry order."""
        if self.spec.group is None:
            return [self]
        return [m for m in self.registry.modalities() if m.spec.group == self.spec.group]

    def labelers(self) -> list[LabelerSpec]:
        """Labeler candidates from every plugin, default first."""
        return self.registry.labelers(self.name)

    def serializer(self) -> Any:
        """The sequence codec object (imported on first use)."""
        return self.registry.serializer(self.name)

    def tokenizer(self, preset: str = "tiny", directory: str | os.PathLike | None = None) -> Any:
        """The tokenizer for ``preset`` (imported on first use), trained weights from ``directory`` when given."""
        return self.registry.tokenizer(self.name, preset, directory)

    def decoder(self, name: str | None = None) -> Any:
        """A decoder object (imported on first use)."""
        return self.registry.decoder(self.name, name)


class Registry(PluginLoader):
    """Loads plugins once and answers every question the core asks about modalities.

    Parameters are for tests and embedding; by default they come from the environment and the installed
    distributions. ``extra_plugins`` registers in-process plugin objects (``(name, object)``) as if they had entry
    points, which the pytest fixtures use.
    """

    def __init__(
        self,
        entry_points_: Iterable[EntryPoint] | None = None,
        *,
        disabled: Iterable[str] | None = None,
        strict: bool | None = None,
        trace: bool | None = None,
        extra_plugins: Sequence[tuple[str, object]] = (),
    ) -> None:
        super().__init__(entry_points_, disabled, strict, trace, extra_plugins)
        self._parts_cache: dict[tuple[str, ...], Any] = {}
        self._modalities: dict[str, Modality] = {}
        self._sources: dict[str, tuple[SourceSpec, PluginRecord]] = {}
        self._labelers: dict[str, list[tuple[LabelerSpec, PluginRecord]]] = defaultdict(list)
        self._serializers: dict[str, tuple[SerializerSpec, PluginRecord]] = {}
        self._tokenizers: dict[str, tuple[TokenizerSpec, PluginRecord]] = {}
        self._decoders: dict[str, list[tuple[DecoderSpec, PluginRecord]]] = defaultdict(list)
        self._collect()
        if self.strict and self.problems:
            raise PluginError(
                "plugin problems (FOURM_STRICT_PLUGINS=1):\n" + "\n".join(f"  - {p}" for p in self.problems)
            )

    # ---------------------------------------------------------------------------------------------------------------
    # collecting
    # ---------------------------------------------------------------------------------------------------------------

    def _collect(self) -> None:
        claims: dict[str, list[tuple[ModalitySpec, PluginRecord]]] = defaultdict(list)
        declared: list[tuple[PluginRecord, ModalityDeclaration]] = []
        for record, items in self._each_impl("fourm_register_modalities", ModalitySpec, ModalityDeclaration):
            for item in items:
                if isinstance(item, ModalityDeclaration):
                    declared.append((record, item))
                    item = item.spec
                claims[item.name].append((item, record))
        accepted: dict[str, tuple[ModalitySpec, PluginRecord]] = {}
        for name, claimants in claims.items():
            if len(claimants) > 1:
                labels = " and ".join(r.label for _, r in claimants)
                self._problem(
                    "conflict",
                    f"modality {name!r} is claimed by {labels}; neither is loaded",
                    [r for _, r in claimants],
                )
            else:
                accepted[name] = claimants[0]
        check_keys(accepted, self._problem)
        ordered = dependency_order(accepted, set(claims), self._problem)
        self._modalities = {name: Modality(accepted[name][0], accepted[name][1], self) for name in ordered}
        self._collect_parts(declared)

    def _parts(
        self, declared: list[tuple[PluginRecord, ModalityDeclaration]], hook: str, model: type[Any], of: str
    ) -> Iterable[tuple[PluginRecord, list[Any]]]:
        """Parts of one kind: first those inside declarations, then those registered through ``hook``."""
        for record, declaration in declared:
            if declaration.name in self._modalities:  # a dropped modality's parts go with it, silently
                found = getattr(declaration, of)()
                parts = [p for p in (found if isinstance(found, list) else [found]) if p is not None]
                if self.trace and parts:
                    names = ", ".join(p.modality for p in parts)
                    print(f"fourm trace: {hook} <- {record.label} (declaration): [{names}]", file=sys.stderr)
                yield record, parts
        yield from self._each_impl(hook, model)

    def _collect_parts(self, declared: list[tuple[PluginRecord, ModalityDeclaration]]) -> None:
        known = set(self._modalities)
        specs = {name: m.spec for name, m in self._modalities.items()}

        def check(record: PluginRecord, modality: str, what: str) -> bool:
            if modality in known:
                return True
            self._problem("part", f"{record.label} registers a {what} for unknown modality {modality!r}", [record])
            return False

        for record, sources in self._each_impl("fourm_register_sources", SourceSpec):
            for source in sources:
                if source.name in self._sources:
                    other = self._sources[source.name][1]
                    self._problem(
                        "conflict",
                        f"source {source.name!r} is registered by {other.label} and {record.label}",
                        [other, record],
                    )
                    continue
                self._sources[source.name] = (source, record)
        for record, labelers in self._parts(declared, "fourm_register_labelers", LabelerSpec, "labeler_specs"):
            for lab in labelers:
                if not check(record, lab.modality, "labeler") or not check_requirements(
                    lab, record, specs, self._problem
                ):
                    continue
                clash = [r for s, r in self._labelers[lab.modality] if s.name == lab.name]
                if clash:
                    self._problem(
                        "conflict",
                        f"labeler {lab.modality}/{lab.name} is registered by {clash[0].label} and {record.label}",
                        [clash[0], record],
                    )
                    continue
                self._labelers[lab.modality].append((lab, record))
        single = (
            ("fourm_register_serializers", SerializerSpec, self._serializers, "serializer"),
            ("fourm_register_tokenizers", TokenizerSpec, self._tokenizers, "tokenizer"),
        )
        for hook, model, table, what in single:
            for record, parts in self._parts(declared, hook, model, f"{what}_spec"):
                for part in parts:
                    if not check(record, part.modality, what):
                        continue
                    if part.modality in table:
                        other = table[part.modality][1]
                        self._problem(
                            "conflict",
                            f"{what} for {part.modality!r} is registered by {other.label} and {record.label}",
                            [other, record],
                        )
                        continue
                    table[part.modality] = (part, record)
        for record, decoders in self._parts(declared, "fourm_register_decoders", DecoderSpec, "decoder_specs"):
            for dec in decoders:
                if check(record, dec.modality, "decoder"):
                    self._decoders[dec.modality].append((dec, record))

    # ---------------------------------------------------------------------------------------------------------------
    # facade
    # ---------------------------------------------------------------------------------------------------------------

    def plugins(self) -> list[PluginRecord]:
        """Every entry point seen, loaded, blocked or broken, by name."""
        return sorted(self._records.values(), key=lambda r: r.name)

    def modalities(self) -> list[Modality]:
        """Loaded modalities in dependency order (dependencies first, ties by name)."""
        return list(self._modalities.values())

    def names(self) -> list[str]:
        """Names of the loaded modalities, in dependency order."""
        return list(self._modalities)

    def get(self, name: str) -> Modality:
        """The modality called ``name``; the error suggests close names and says why it might be missing."""
        try:
            return self._modalities[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._modalities, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            why = [str(p) for p in self.problems if repr(name) in p.message]
            because = f" ({why[0]})" if why else ""
            raise KeyError(f"no modality {name!r} is registered{because}{hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._modalities

    def model_keys(self, preset: str = "paper") -> dict[str, list[Modality]]:
        """Model-facing keys in registry order, each with the modalities (group members) behind it."""
        keys: dict[str, list[Modality]] = {}
        for modality in self._modalities.values():
            keys.setdefault(modality.model_key(preset), []).append(modality)
        return keys

    def sources(self) -> list[SourceSpec]:
        """Registered data sources, by name."""
        return [s for s, _ in sorted(self._sources.values(), key=lambda t: t[0].name)]

    def source(self, name: str) -> SourceSpec:
        """One data source spec by name."""
        if name not in self._sources:
            raise KeyError(f"no data source {name!r}; known: {', '.join(sorted(self._sources)) or 'none'}")
        return self._sources[name][0]

    def labelers(self, modality: str) -> list[LabelerSpec]:
        """Labeler candidates for ``modality``: the modality plugin's default first, then by name."""
        owner = self.get(modality).plugin
        entries = self._labelers.get(modality, [])
        return [s for s, r in sorted(entries, key=lambda t: (not (t[0].default and t[1] is owner), t[0].name))]

    def serializer_spec(self, modality: str) -> SerializerSpec | None:
        """The registered serializer spec of ``modality``, if any (no import)."""
        entry = self._serializers.get(modality)
        return entry[0] if entry else None

    def serializer(self, modality: str) -> Any:
        """Build (once) and return the sequence serializer of ``modality``."""
        spec = self.serializer_spec(modality)
        if spec is None:
            raise PluginError(f"modality {modality!r} has no serializer registered")
        return self._build(("serializer", modality), spec.factory, modality)

    def key_serializer(self, model_key: str, preset: str = "paper") -> Any:
        """The codec of a model-facing sequence key: its plugin's serializer, or, for a group, a
        :class:`~fourm_core.serialization.GroupSerializer` that interleaves every member's chunks."""
        from fourm_core.serialization import GroupSerializer

        members = self.model_keys(preset).get(model_key)
        if not members:
            raise KeyError(f"no modality has the model key {model_key!r} in preset {preset!r}")
        if len(members) == 1:
            return self.serializer(members[0].name)
        cache_key = ("group", model_key, preset)
        if cache_key not in self._parts_cache:
            parts = [(m.name, self.serializer(m.name), m.spec.chunk_tags) for m in members]
            self._parts_cache[cache_key] = GroupSerializer(model_key, parts)
        return self._parts_cache[cache_key]

    def tokenizer_spec(self, modality: str) -> TokenizerSpec | None:
        """The registered tokenizer implementation spec of ``modality``, if any (no import)."""
        entry = self._tokenizers.get(modality)
        return entry[0] if entry else None

    def tokenizer(self, modality: str, preset: str = "tiny", directory: str | os.PathLike | None = None) -> Any:
        """The tokenizer of ``modality``: a plugin-registered implementation when there is one, else the generic
        family the spec declares (``fourm_core.tokenizers``). Trained weights are loaded from ``directory`` (default:
        ``$FOURM_TOKENIZERS`` when set); without weights the tokenizer is untrained (``.trained`` is False).

        ``directory="official"`` (``tokenizers="official"``, ``--tokenizers official``) gives the official ml-4m
        tokenizer the plugin declares (``spec.official``), from the hub cache, whatever the preset: a modality
        without one raises an error naming it, an uncached repo while offline the hub's error naming the repo."""
        mspec = self.get(modality).spec
        spec = self.tokenizer_spec(modality)
        directory = directory or os.environ.get("FOURM_TOKENIZERS")
        if isinstance(directory, str) and directory == OFFICIAL_TOKENIZERS:
            return self._official_tokenizer(mspec)
        if spec is not None:  # factory(spec, preset, directory): a plugin's tokenizer loads its weights from there
            key = ("tokenizer", modality, preset, str(directory or ""))
            return self._build(key, spec.factory, modality, mspec, preset, directory)
        declared = mspec.tokenizer
        if declared is None or declared.family == "wordpiece" or declared.transform is None:
            what = f" (declared family: {declared.family})" if declared else ""
            raise PluginError(f"modality {modality!r} has no learned tokenizer{what}")
        if directory:
            key = ("tokenizer", modality, preset, str(directory))
            return self._build(key, "fourm_core.tokenizers:load_tokenizer", modality, mspec, directory)
        return self._build(
            ("tokenizer", modality, preset), "fourm_core.tokenizers:build_tokenizer", modality, mspec, preset
        )

    def _official_tokenizer(self, mspec: ModalitySpec) -> Any:
        """The official tokenizer of ``mspec``, built once; its errors (no official tokenizer, repo not cached) are
        the user's one-line errors as raised, not wrapped as a plugin failure."""
        key = ("tokenizer", mspec.name, OFFICIAL_TOKENIZERS)
        if key not in self._parts_cache:
            from fourm_core.tokenizers.official.resolve import official_tokenizer

            self._parts_cache[key] = official_tokenizer(mspec, self)
        return self._parts_cache[key]

    def decoders(self, modality: str) -> list[DecoderSpec]:
        """Decoder specs registered for ``modality``."""
        return [s for s, _ in self._decoders.get(modality, [])]

    def decoder(self, modality: str, name: str | None = None) -> Any:
        """Build (once) a decoder of ``modality`` by name (the first registered when ``name`` is None)."""
        specs = self.decoders(modality)
        chosen = [s for s in specs if name is None or s.name == name]
        if not chosen:
            raise PluginError(f"modality {modality!r} has no decoder{f' named {name!r}' if name else ''}")
        return self._build(("decoder", modality, chosen[0].name), chosen[0].factory, modality)

    def _build(self, cache_key: tuple[str, ...], ref: str, modality: str, *args: Any) -> Any:
        if cache_key not in self._parts_cache:
            try:
                factory = resolve_ref(ref)
                self._parts_cache[cache_key] = factory(*args)
            except Exception as exc:
                owner = self._modalities[modality].plugin.label if modality in self._modalities else "?"
                raise PluginError(f"{cache_key[0]} of {modality!r} ({owner}) from {ref!r} failed: {exc!r}") from exc
        return self._parts_cache[cache_key]

    def masking_chunks(self, modality: str, sequence: str) -> list[str]:
        """Atomic chunks of a chunk-masked sequence: a plugin's ``fourm_masking_chunks`` answer, else split before
        every ``chunk_tags`` token of the modality's group members."""
        mod = self.get(modality)
        if mod.spec.masking != MaskingUnit.CHUNK:
            raise ValueError(f"modality {modality!r} is masked by {mod.spec.masking.value}, not by chunks")
        answer = self.pm.hook.fourm_masking_chunks(modality=mod.spec, sequence=sequence)
        if answer is not None:
            return list(answer)
        tags = {t for member in mod.group_members() for t in member.spec.chunk_tags}
        chunks: list[list[str]] = []
        for token in sequence.split():
            if token in tags or not chunks:
                chunks.append([token])
            else:
                chunks[-1].append(token)
        return [" ".join(c) for c in chunks]

    def check(self) -> None:
        """Raise :class:`PluginError` listing every problem, if there is any."""
        if self.problems:
            raise PluginError("plugin problems:\n" + "\n".join(f"  - {p}" for p in self.problems))
