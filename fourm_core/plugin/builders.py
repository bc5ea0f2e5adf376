"""Builders for the declaration shapes several modalities share, re-exported by :mod:`fourm_core.plugin`.

Each returns the plain records a plugin could write by hand (a :class:`ModalityDeclaration`, a :class:`LabelerEntry`,
an :class:`ArraySpec`), so a plugin states only what is its own and the registry sees the same data either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fourm_core.labeling.features import FeatureTeacherSpec
from fourm_core.labeling.hub import HubModel
from fourm_core.serialization import KeyValueField
from fourm_core.spec.modality import (
    ArraySpec,
    MaskingUnit,
    ModalityKind,
    ModalitySpec,
    PresetLayout,
    TokenizerConfig,
    grid_presets,
    tokens_array,
)
from fourm_core.spec.official import OfficialAssets
from fourm_core.spec.parts import DecoderEntry, LabelerEntry, LazyRef, ModalityDeclaration, Requirement, RequirementKind

__all__ = [
    "source_labeler",
    "labeler",
    "teacher_labeler",
    "record_decoder",
    "pixel_array",
    "image_token_modality",
    "sequence_modality",
    "feature_map_modality",
    "global_embedding_modality",
    "key_value_modality",
]


def source_labeler(
    fields: Mapping[str, str],
    *,
    description: str,
    name: str = "source",
    default: bool = True,
    allow_empty: bool = True,
) -> LabelerEntry:
    """A labeler that copies ground truth the data source provides (``{storage array: source field}``), converting
    numeric arrays to the dtype the spec declares; it requires each source field, so it is skipped, with a message,
    for sources that lack one."""
    return LabelerEntry(
        name=name,
        factory="fourm_core.labeling.common:copy_source",
        default=default,
        requires=tuple(Requirement(kind=RequirementKind.SOURCE, target=f) for f in fields.values()),
        options={"fields": dict(fields), "allow_empty": allow_empty},
        description=description,
    )


def labeler(
    name: str,
    factory: LazyRef,
    *,
    description: str,
    requires: Sequence[str | Requirement] = (),
    default: bool = True,
    options: Mapping[str, Any] | None = None,
    explicit: bool = False,
) -> LabelerEntry:
    """A labeler of the plugin's own code (``factory`` is ``"package.labelers:function"``), by default the one
    ``fourm data label`` runs; ``requires`` lists what it needs (``modality:rgb``, ``package:skimage``...).
    ``explicit=True`` (which implies not the default): it runs only when the user names it (``--labeler
    modality=name``), the way to offer a stand-in that must never replace the paper's teacher by itself."""
    return LabelerEntry(
        name=name,
        factory=factory,
        default=default and not explicit,
        explicit=explicit,
        requires=tuple(requires),
        options=dict(options or {}),
        description=description,
    )


def teacher_labeler(
    factory: LazyRef,
    model: HubModel,
    *,
    description: str,
    name: str = "teacher",
    requires: Sequence[str | Requirement] = (),
    options: Mapping[str, Any] | None = None,
    default: bool = False,
    explicit: bool = False,
) -> LabelerEntry:
    """A labeler that runs a hub teacher (``factory`` returns an ``fp.HubTeacher`` subclass): it requires
    ``hub:<model id>`` (checked when the run is planned: cached, downloadable, or random-init allowed), torch and the
    model's ``library``, plus ``requires`` (``modality:rgb``...); the factory receives the model as the ``model``
    option. Not the default, so that a modality's source-copy labeler (synthetic ground truth), listed before it,
    is tried first and photo stores fall through to the teacher. ``explicit=True``: runs only when named.

    A ``plan_check(context, **options) -> (status, reason, model_id)`` attribute on the factory is called when the
    run is planned, after the requirements hold (the factory's module is imported then: import torch inside
    functions), so a teacher that cannot label this store (a width the preset does not store) is a skip with its
    reason instead of a stop when the factory runs."""
    needs: list[Requirement] = [Requirement.parse(r) if isinstance(r, str) else r for r in requires]
    for extra in (model.requirement(), "package:torch", f"package:{model.library}"):
        req = Requirement.parse(extra)
        if req not in needs:
            needs.append(req)
    opts = dict(options or {})
    if "model" in opts:
        raise ValueError(f"labeler {name!r}: the option 'model' is set by teacher_labeler from its model argument")
    opts["model"] = model.model_dump(mode="json")
    return LabelerEntry(
        name=name,
        factory=factory,
        default=default and not explicit,
        explicit=explicit,
        requires=tuple(needs),
        options=opts,
        description=description,
    )


def record_decoder(description: str = "The record as a name: value table.") -> DecoderEntry:
    """The core's table picture of a key-value record (metadata-like modalities)."""
    return DecoderEntry(factory="fourm_core.viz.rendering:RecordDecoder", description=description)


def pixel_array(name: str, dtype: str, description: str, *, channels: int | None = None) -> ArraySpec:
    """A raw per-pixel array at the source's resolution, ``(H, W)`` or ``(H, W, channels)``: what an image modality
    stores before ``fourm data tokenize`` turns it into tokens."""
    shape: tuple[int | str, ...] = ("H", "W") if channels is None else ("H", "W", channels)
    return ArraySpec(name=name, dtype=dtype, shape=shape, description=description)


def image_token_modality(
    name: str,
    key: str,
    tokenizer: TokenizerConfig,
    *,
    vocab: tuple[int, int],
    description: str,
    arrays: Sequence[ArraySpec] = (),
    labelers: Sequence[LabelerEntry] = (),
    depends_on: Sequence[str] = (),
    uses: Sequence[str] = (),
    paper_patch: int = 16,
    class_names: Sequence[str] = (),
    class_sets: Mapping[str, Sequence[int]] | None = None,
    official: OfficialAssets | None = None,
) -> ModalityDeclaration:
    """An image modality as a grid of discrete tokens (ml-4m ``tok_<name>@224``: depth, normals, edges, ...).

    ``vocab`` is the codebook size of the paper and tiny presets; the grid is :func:`grid_presets` (224 px with
    ``paper_patch``, 64 px with patch 8) and the model key carries the resolution. The spec stores the raw ``arrays``
    the ``tokenizer`` reads (none when it reads another modality's, as ``tok_rgb`` does) followed by the token array
    ``fourm data tokenize`` writes; ``class_names``/``class_sets`` are for class maps. The tokenizer's
    ``input_channels``, when left out, is the channel count of the first raw array (1 for ``(H, W)``, C for
    ``(H, W, C)``), so a plugin states it once, in the array. ``official`` names the published ml-4m tokenizer and
    the normalisation it expects (:class:`~fourm_core.spec.OfficialAssets`).
    """
    if tokenizer.input_channels is None and arrays:
        shape = arrays[0].shape
        channels = 1 if len(shape) == 2 else shape[-1] if len(shape) == 3 and isinstance(shape[-1], int) else None
        tokenizer = tokenizer.model_copy(update={"input_channels": channels})
    spec = ModalitySpec(
        name=name,
        key=key,
        key_has_resolution=True,
        kind=ModalityKind.IMAGE_TOKENS,
        presets=grid_presets(*vocab, paper_patch=paper_patch),
        depends_on=tuple(depends_on),
        uses=tuple(uses),
        tokenizer=tokenizer,
        storage=(*arrays, tokens_array()),
        class_names=tuple(class_names),
        class_sets={k: tuple(v) for k, v in (class_sets or {}).items()},
        official=official,
        description=description,
    )
    return ModalityDeclaration(spec=spec, labelers=tuple(labelers))


def sequence_modality(
    name: str,
    key: str,
    *,
    max_tokens: tuple[int, int],
    storage: Sequence[ArraySpec],
    labelers: Sequence[LabelerEntry],
    serializer: LazyRef,
    decoder: DecoderEntry,
    description: str,
    vocab_words: Sequence[str] = (),
    tokenizer: TokenizerConfig | None = None,
    depends_on: Sequence[str] = (),
    uses: Sequence[str] = (),
    official: OfficialAssets | None = None,
) -> ModalityDeclaration:
    """A span-masked sequence in the shared text vocabulary (captions, boxes, palettes, poses, instances).

    ``max_tokens`` is the token budget of the paper and tiny presets; ``serializer`` names the factory of the string
    codec and ``decoder`` draws a value. ``vocab_words`` are the format's whole words (class names, keywords) the
    shared vocabulary must hold as single tokens; a ``tokenizer`` is for codes embedded in the text (pose and mask
    codebooks), with an item token array in ``storage``; ``official`` names the official text tokenizer (and the
    official item tokenizer, when there is one).
    """
    spec = ModalitySpec(
        name=name,
        key=key,
        kind=ModalityKind.SEQUENCE,
        presets={"paper": PresetLayout(max_tokens=max_tokens[0]), "tiny": PresetLayout(max_tokens=max_tokens[1])},
        depends_on=tuple(depends_on),
        uses=tuple(uses),
        vocab_words=tuple(vocab_words),
        tokenizer=tokenizer,
        storage=tuple(storage),
        official=official,
        description=description,
    )
    return ModalityDeclaration(spec=spec, labelers=tuple(labelers), serializer=serializer, decoders=(decoder,))


def feature_map_modality(
    name: str,
    key: str,
    teacher: FeatureTeacherSpec,
    *,
    description: str,
    labeler_description: str,
    notes: str,
    vocab_sizes: tuple[int, int] = (8192, 512),
    pooled_description: str = "",
    official: OfficialAssets | None = None,
) -> ModalityDeclaration:
    """A timm teacher's patch-feature map as image tokens (CLIP, DINOv2, ImageBind in 4M-21).

    The paper grid uses the teacher's patch size (14 px gives ml-4m's 16x16 at 224 px); the modality depends on the
    teacher's input modality, stores ``(h, w, C)`` float16 features (and the CLS embedding when the teacher names a
    ``pooled_array``, for a global-embedding modality to copy), and is tokenized by a ViT VQ-VAE on the features. Its
    labeler is the core's timm feature teacher (``fourm_core.labeling.features:feature_teacher``), declared with
    :func:`teacher_labeler`: it requires the teacher's ``hub:`` weights, so the plan names the model id and skips the
    modality when they cannot be had; torch and timm are imported only when it runs.
    """
    storage = [
        ArraySpec(
            name=teacher.patch_array, dtype="float16", shape=("h", "w", "C"), description="teacher patch features"
        )
    ]
    if teacher.pooled_array:
        storage.append(
            ArraySpec(name=teacher.pooled_array, dtype="float32", shape=("C",), description=pooled_description)
        )
    labeler = teacher_labeler(
        "fourm_core.labeling.features:feature_teacher",
        teacher.model,
        name="teacher",
        default=True,
        requires=(f"modality:{teacher.input_modality}",),
        options=teacher.labeler_options(),
        description=labeler_description,
    )
    return image_token_modality(
        name,
        key,
        TokenizerConfig(
            family="vit_vqvae", loss="smooth_l1", input_channels=teacher.feature_dim, transform="features", notes=notes
        ),
        vocab=vocab_sizes,
        paper_patch=teacher.patch_size,
        depends_on=(teacher.input_modality,),
        arrays=storage,
        labelers=(labeler,),
        official=official,
        description=description,
    )


def global_embedding_modality(
    name: str,
    key: str,
    *,
    teacher: str,
    width: int,
    depends_on: Sequence[str],
    description: str,
    embedding_description: str,
    model: HubModel | None = None,
    labeler_description: str = "",
    array: str = "cls",
    tokens: tuple[int, int] = (16, 8),
    vocab_sizes: tuple[int, int] = (8192, 512),
    official: OfficialAssets | None = None,
) -> ModalityDeclaration:
    """A teacher's global (CLS) embedding as a few discrete tokens, for retrieval (4M-21's ``*_global`` keys).

    The labeler copies the ``array`` vector the ``teacher`` modality stored (so that modality is labelled first and
    the weights are recorded once, in its provenance); the tokenizer is a bottleneck MLP with Memcodes, one head per
    token, trained with a cosine loss. ``model``, the hub weights of the ``teacher`` modality's labeler, makes the copy
    name that model in its provenance and plan and require the same ``hub:`` weights (so a run without them skips
    both modalities with one ``hf download`` line); without it the copy is the core's plain ``copy_array``.
    """
    spec = ModalitySpec(
        name=name,
        key=key,
        kind=ModalityKind.GLOBAL_TOKENS,
        presets={
            "paper": PresetLayout(max_tokens=tokens[0], vocab_size=vocab_sizes[0]),
            "tiny": PresetLayout(max_tokens=tokens[1], vocab_size=vocab_sizes[1]),
        },
        depends_on=tuple(depends_on),
        uses=(teacher,),
        tokenizer=TokenizerConfig(
            family="mlp_memcodes",
            loss="cosine",
            input_channels=width,
            transform="embedding",
            notes="bottleneck MLP + Memcodes; one head per token",
        ),
        storage=(
            ArraySpec(name="embedding", dtype="float32", shape=("C",), description=embedding_description),
            tokens_array(),
        ),
        official=official,
        description=description,
    )
    options = {"modality": teacher, "array": array, "target": "embedding"}
    made_by = f" ({model.model_id})" if model is not None else ""
    labeler_description = labeler_description or (
        f"The {array.upper()} embedding the {teacher} teacher{made_by} stored (its {array!r} array), copied."
    )
    if model is None:
        labeler = LabelerEntry(
            name="from_teacher",
            factory="fourm_core.labeling.common:copy_array",
            default=True,
            requires=(f"modality:{teacher}",),
            options=options,
            description=labeler_description,
        )
    else:
        labeler = teacher_labeler(
            "fourm_core.labeling.features:copy_embedding",
            model,
            name="from_teacher",
            default=True,
            requires=(f"modality:{teacher}",),
            options=options,
            description=labeler_description,
        )
    return ModalityDeclaration(spec=spec, labelers=(labeler,))


def key_value_modality(
    name: str,
    key: str,
    *,
    fields: Sequence[KeyValueField],
    serializer: LazyRef,
    labeler: LabelerEntry,
    description: str,
    max_tokens: int,
    depends_on: Sequence[str] = (),
    uses: Sequence[str] = (),
    official: OfficialAssets | None = None,
) -> ModalityDeclaration:
    """A chunk-masked member of a key-value group (4M-21's metadata): ``v1=<type> v0=<bin>`` pairs, one chunk per
    field, sharing the model key ``key`` (and the group of that name) with the other members.

    ``serializer`` names a zero-argument factory of the member's :class:`KeyValueSerializer` over ``fields``; the
    decoder is the core's record table. Every member must give the same ``max_tokens`` (the group is one key).
    """
    layout = PresetLayout(max_tokens=max_tokens)
    spec = ModalitySpec(
        name=name,
        key=key,
        group=key,
        kind=ModalityKind.SEQUENCE,
        masking=MaskingUnit.CHUNK,
        presets={"paper": layout, "tiny": layout},
        depends_on=tuple(depends_on),
        uses=tuple(uses),
        chunk_tags=tuple(f.tag for f in fields),
        storage=(ArraySpec(name="values", dtype="json", ragged=True, description="{field: raw value}"),),
        official=official,
        description=description,
    )
    return ModalityDeclaration(
        spec=spec,
        labelers=(labeler,),
        serializer=serializer,
        decoders=(record_decoder(),),
    )
