"""The fourm plugin API: every hook a modality plugin can implement, grouped by lifecycle phase.

This module is the plugin API reference (``docs/plugin_api.md`` is generated from it and a test fails when a hook has
no docstring). A plugin is any module or object exposed through the ``fourm.modalities`` entry point group whose
functions are decorated with :data:`hookimpl`::

    # pyproject.toml
    [project.entry-points."fourm.modalities"]
    albedo = "fourm_albedo.plugin"

    # fourm_albedo/plugin.py: plugins import only fourm_core.plugin, which re-exports hookimpl and every record
    from fourm_core.plugin import ModalityDeclaration, ModalitySpec, hookimpl, source_labeler

    FOURM_CONTRACT = 2  # the contract this plugin was written for; another version is refused as a problem

    @hookimpl
    def fourm_register_modalities(register):
        register(ModalityDeclaration(spec=ModalitySpec(name="albedo", key="tok_albedo", ...),
                                     labelers=(source_labeler({"albedo": "albedo"}, description="..."),)))

Conventions shared by all hooks:

* Registration hooks receive a ``register`` callback, as in ``llm`` and ``datasette``: a plugin may register zero, one
  or many records, and the registry knows which distribution registered each (errors name it).
* Everything heavy is referenced lazily as ``"package.module:attribute"``; the registry imports it on first use, so
  ``fourm plugins``, ``fourm modalities`` and ``fourm vocab build`` never import torch-heavy code.
* Hooks are called once per plugin by the registry, never in an order that matters: ordering that matters is data
  (``ModalitySpec.depends_on``), not ``tryfirst``/``trylast``.
* A hook that raises marks its plugin as broken (the error is recorded with distribution name and version and shown
  by ``fourm plugins``); other plugins keep working. ``FOURM_STRICT_PLUGINS=1`` makes it fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fourm_core.spec import (
        CommandSpec,
        DecoderSpec,
        LabelerSpec,
        ModalitySpec,
        SerializerSpec,
        SourceSpec,
        TokenizerSpec,
    )

PROJECT = "fourm"

#: The plugin contract this core implements. Bumped when a plugin written for the previous contract would misbehave
#: (2: typed requirements, kind-decided spec fields, one-call declarations, ``fourm_core.plugin`` as the only import).
CONTRACT_VERSION = 2
#: Contract versions whose plugins this core loads; a plugin module built for another one (its ``FOURM_CONTRACT``)
#: is refused with a ``contract`` problem and the other plugins keep working.
SUPPORTED_CONTRACTS: frozenset[int] = frozenset({2})
#: Module attribute where a plugin says which contract it was built for (``FOURM_CONTRACT = 2``).
CONTRACT_ATTRIBUTE = "FOURM_CONTRACT"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate plugin functions with this marker.
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------------------------------------------------
# Phase 1: discover
# --------------------------------------------------------------------------------------------------------------------


@hookspec
def fourm_register_modalities(register: Callable[[ModalitySpec], None]) -> None:
    """Declare the modalities this plugin provides, each with its own parts in one call.

    Call ``register(declaration)`` once per :class:`~fourm_core.spec.ModalityDeclaration` (the spec plus its
    labelers, serializer, decoders and tokenizer), or ``register(spec)`` with a bare
    :class:`~fourm_core.spec.ModalitySpec` when the parts come through the other hooks. Records are validated
    (pydantic) when built; an invalid one marks the plugin broken and names the field. Declared parts are filed as if
    registered through their own hooks, with the same conflict checks; those hooks remain for parts that target
    another plugin's modality. Two plugins registering the same ``name``, or the same model key outside a shared
    ``group``, are a conflict: both are rejected and the error names both distributions and versions. Modality ids
    are derived from the model key (``sha256 % 2**15``, as ml-4m does), so installing or removing another plugin
    never changes this modality's id. ``embedding``, ``vocabulary`` and ``masking`` default from ``kind``.

    Example::

        @hookimpl
        def fourm_register_modalities(register):
            register(ModalityDeclaration(
                spec=ModalitySpec(name="depth", key="tok_depth", key_has_resolution=True, kind="image_tokens",
                                  presets=grid_presets(8192, 512), storage=(..., tokens_array())),
                labelers=(source_labeler({"depth": "depth"}, description="exact depth from the source"),),
            ))
    """


@hookspec
def fourm_register_sources(register: Callable[[SourceSpec], None]) -> None:
    """Declare data sources (where samples come from).

    Call ``register(SourceSpec(name=..., factory="pkg.module:SourceClass", provides=(...)))``. ``provides`` lists the
    modalities the source gives as ground truth, which lets labelers use the truth instead of a model. Sources are
    instantiated lazily by ``fourm data`` commands.
    """


# --------------------------------------------------------------------------------------------------------------------
# Phase 2: label
# --------------------------------------------------------------------------------------------------------------------


@hookspec
def fourm_register_labelers(register: Callable[[LabelerSpec], None]) -> None:
    """Offer pseudo-labeler candidates, for your own modalities or for anybody else's.

    Call ``register(LabelerSpec(modality="depth", name="dpt", factory="pkg.labelers:DPTLabeler", requires=(...)))``
    (a modality's own labelers usually come in its :class:`~fourm_core.spec.ModalityDeclaration` instead).
    ``requires`` is typed (:class:`~fourm_core.spec.Requirement`, written ``"kind:target"`` with kind ``source``,
    ``package``, ``modality``, ``env`` or ``hub``); an unknown kind, or a ``modality:`` requirement on a modality the
    labelled one is not ordered after, is a ``requirement`` problem naming the plugin and the labeler. The runner calls
    ``factory(spec, context, **options)``.
    A labeler that runs a teacher network declares its weights with ``fp.HubModel`` and is built with
    ``fp.teacher_labeler(factory, model, ...)``, which adds ``hub:<model id>``: the run plan
    (``fourm data label --plan``) counts it usable when the weights are cached, downloadable, or random-init stand-ins
    are allowed (``--allow-random-teachers``), and otherwise skips the modality with the model id and the
    ``hf download`` command. Its factory returns an ``fp.HubTeacher`` subclass (batching, device and precision,
    per-sample failures and provenance are the base's).
    A modality may have several candidates (an offline classical one, a real-model one from another distribution);
    configuration picks one by name, otherwise the one marked ``default=True`` by the modality's own plugin. Two
    candidates with the same (modality, name) are a conflict naming both distributions.
    """


# --------------------------------------------------------------------------------------------------------------------
# Phase 3: tokenize
# --------------------------------------------------------------------------------------------------------------------


@hookspec
def fourm_register_serializers(register: Callable[[SerializerSpec], None]) -> None:
    """Provide the string codec of a sequence modality.

    Call ``register(SerializerSpec(modality="det", factory="pkg.serializer:DetSerializer"))`` (or give ``serializer=``
    in the modality's declaration). The factory builds an
    object following :class:`fourm_core.serialization.SequenceSerializer`: ``serialize(value, rng=None) -> str``
    (the official ml-4m string, e.g. ``v0=12 v1=40 v2=300 v3=511 person``), ``parse(text) -> value``,
    ``example(rng) -> value`` (a random valid value, used by the conformance suite) and, for chunk-masked modalities,
    ``chunks(value, rng=None) -> list[str]``; serializers whose values come from stored items plus their tokens also
    follow :class:`fourm_core.serialization.FromStore` (``from_store(row, rng=None)``). The conformance suite checks
    that ``serialize(parse(serialize(v))) == serialize(v)`` and that every token lies inside the shared vocabulary.

    **Grammar (optional,** :class:`fourm_core.plugin.HasGrammar` **).** ``grammar(vocab) -> Grammar | None`` describes
    the format as a state machine over the ids of the text vocabulary ``vocab``, built from the pieces in
    :mod:`fourm_core.grammar` (one token of a set, one of several phrases, ordered box corners, sequence, repeat,
    choice, parts in any order at most once). Generation then masks every autoregressive step of the key to the ids
    the grammar allows, and ``[EOS]`` only where the string is complete and fits the key's token budget, so every
    output parses (``constrain=False`` / ``--no-constrain`` turns it off). ``KeyValueSerializer`` and
    ``GroupSerializer`` have theirs built in. The conformance suite (``fourm validate``, check ``grammar``) checks
    both ways: every string ``serialize`` writes for ``example`` values is accepted token by token, and random walks
    of the grammar parse.
    """


@hookspec
def fourm_register_tokenizers(register: Callable[[TokenizerSpec], None]) -> None:
    """Provide the concrete tokenizer of a modality (encode, decode, train, save, load).

    Call ``register(TokenizerSpec(modality="depth", factory="pkg.tokenizer:build"))``. The factory receives the
    modality's :class:`~fourm_core.spec.ModalitySpec`, the preset name and the tokenizer weights folder (or None for
    an untrained tokenizer) and returns an object with
    ``encode(batch) -> LongTensor``, ``decode(tokens) -> Tensor``, ``train(...)``, ``save(dir)`` and ``load(dir)``.
    Most plugins configure a generic family from ``fourm_core.tokenizers`` through ``ModalitySpec.tokenizer``.
    """


@hookspec(firstresult=True)
def fourm_masking_chunks(modality: ModalitySpec, sequence: str) -> list[str] | None:
    """Split one serialized sequence of a chunk-masked modality into its atomic masking chunks.

    Chunk masking (the paper's metadata masking) keeps or drops whole chunks, e.g. ``v1=5 v0=3``. Most plugins need
    not implement this hook: by default the registry splits the sequence before every token listed in the
    ``chunk_tags`` of the modality's group members. Implement it only when chunks cannot be told by a leading token;
    return the chunks in order (their space-joined concatenation must equal ``sequence``), or ``None`` when
    ``modality`` is not yours. Stops at the first non-None result.
    """


# --------------------------------------------------------------------------------------------------------------------
# Phase 4: generate and evaluate
# --------------------------------------------------------------------------------------------------------------------


@hookspec
def fourm_register_decoders(register: Callable[[DecoderSpec], None]) -> None:
    """Provide decoders that draw a modality's generated value as a picture.

    Call ``register(DecoderSpec(modality="det", factory="pkg.decoders:DetDecoder"))``. ``factory()`` is called with
    no arguments (once; the object is cached) and builds an object with
    ``render(value, context: RenderContext) -> (H, W, 3) uint8 array | None``. For a sequence modality ``value`` is
    what the modality's serializer ``parse`` returns (for a group such as ``metadata``, the group's
    ``{member: member value}`` dict, handed to the member that stands for the key); ``context``
    (:class:`fourm_core.viz.rendering.RenderContext`) gives the input picture as the model saw it (or None),
    the output ``size``, the ``preset`` and ``tokenizer(name)``, a modality's trained tokenizer or None (per-item
    tokens such as pose or mask codes decode with it). Examples: boxes drawn on the image for det, a table for
    metadata. :func:`~fourm_core.viz.rendering.render_output` calls the first registered decoder, resizes
    its picture to ``size`` x ``size`` and turns an exception into a warning and no picture. Several named decoders
    may exist per modality.
    """


# --------------------------------------------------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------------------------------------------------


@hookspec
def fourm_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Add commands to the ``fourm`` command line (as ``llm``'s ``register_commands``).

    Call ``register(CommandSpec(name="albedo-stats", help="...", factory="pkg.cli:configure"))``. When ``fourm``
    starts, ``configure(parser)`` receives the command's own :class:`argparse.ArgumentParser`, adds its arguments
    and returns ``run(args) -> int`` (the exit status). The factory is imported only when the command line is built,
    so a broken command marks its plugin broken and the other commands keep working. A name taken by a core command
    or by another plugin is a conflict naming both distributions.
    """
