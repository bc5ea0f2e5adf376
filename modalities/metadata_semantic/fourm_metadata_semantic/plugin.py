"""Semantic metadata, a member of the ``metadata`` group: counts and shares computed from other modalities.

Crowdedness (humans), SAM and COCO clutter, instance and semantic diversity, walkability and objectness (shares of
pixels in class sets the semseg plugin declares) and caption length, as the 4M-21 paper defines them.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.serialization import KeyValueField, KeyValueSerializer
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec

FIELDS = (
    KeyValueField("caption_n_chars", 2, description="characters in the caption"),
    KeyValueField("caption_n_words", 3, description="words in the caption"),
    KeyValueField("caption_n_sentences", 4, description="sentences in the caption"),
    KeyValueField("n_humans", 5, description="crowdedness: number of humans"),
    KeyValueField("n_sam_instances", 6, description="SAM clutter: number of instances"),
    KeyValueField("n_coco_instances", 7, description="COCO clutter: number of detected objects"),
    KeyValueField("coco_instance_diversity", 8, description="number of distinct detected classes"),
    KeyValueField("walkability", 14, lo=0, hi=1, bins=50, description="share of pixels in walkable classes"),
    KeyValueField("objectness", 15, lo=0, hi=1, bins=50, description="share of pixels in countable classes"),
    KeyValueField("semantic_diversity", 16, description="number of distinct semantic classes"),
)

SPEC = ModalitySpec(
    name="metadata_semantic",
    key="metadata",
    group="metadata",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="chunk",
    presets={"paper": PresetLayout(max_tokens=43), "tiny": PresetLayout(max_tokens=43)},
    uses=("caption", "det", "human_poses", "sam_instance", "semseg"),
    chunk_tags=tuple(f.tag for f in FIELDS),
    storage=(ArraySpec(name="values", dtype="json", ragged=True, description="{field: raw value}"),),
    description="Crowdedness, clutter, diversity, walkability, objectness, caption length.",
)


def build_serializer() -> KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return KeyValueSerializer("metadata_semantic", FIELDS)


@hookimpl
def fourm_register_modalities(register):
    """Register the metadata_semantic member of the metadata group."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the chunk codec."""
    register(SerializerSpec(modality="metadata_semantic", factory="fourm_metadata_semantic.plugin:build_serializer"))


@hookimpl
def fourm_register_labelers(register):
    """Counts and class-set shares from the other modalities."""
    register(
        LabelerSpec(
            modality="metadata_semantic",
            name="counts",
            factory="fourm_metadata_semantic.labelers:semantic_metadata_labeler",
            default=True,
            requires=(),
            description="Counts and class-set shares from the other modalities.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="metadata_semantic",
            factory="fourm_core.viz.rendering:RecordDecoder",
            description="The metadata record as a name: value table.",
        )
    )
