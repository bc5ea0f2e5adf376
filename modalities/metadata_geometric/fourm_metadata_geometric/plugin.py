"""Geometric metadata, a member of the ``metadata`` group: geometric complexity and occlusion score.

Geometric complexity is the angular variance of the normals on the unit sphere; the occlusion score is the share of
Sobel depth-edge pixels above a threshold (0.3), as the 4M-21 paper defines them.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.serialization import KeyValueField, KeyValueSerializer
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec

FIELDS = (
    KeyValueField("geometric_complexity", 17, lo=0, hi=0.75, bins=50, description="angular variance of normals"),
    KeyValueField("occlusion_score", 18, lo=0, hi=0.25, bins=50, description="share of strong depth edges"),
)

SPEC = ModalitySpec(
    name="metadata_geometric",
    key="metadata",
    group="metadata",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="chunk",
    presets={"paper": PresetLayout(max_tokens=43), "tiny": PresetLayout(max_tokens=43)},
    depends_on=("depth", "normal"),
    chunk_tags=tuple(f.tag for f in FIELDS),
    storage=(ArraySpec(name="values", dtype="json", ragged=True, description="{field: raw value}"),),
    description="Geometric complexity (normals) and occlusion score (depth edges).",
)


def build_serializer() -> KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return KeyValueSerializer("metadata_geometric", FIELDS)


@hookimpl
def fourm_register_modalities(register):
    """Register the metadata_geometric member of the metadata group."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the chunk codec."""
    register(SerializerSpec(modality="metadata_geometric", factory="fourm_metadata_geometric.plugin:build_serializer"))


@hookimpl
def fourm_register_labelers(register):
    """Angular variance of normals and Sobel occlusion edges of depth."""
    register(
        LabelerSpec(
            modality="metadata_geometric",
            name="geometry",
            factory="fourm_metadata_geometric.labelers:geometric_metadata_labeler",
            default=True,
            requires=(
                "modality:normal",
                "modality:depth",
            ),
            description="Angular variance of normals and Sobel occlusion edges of depth.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="metadata_geometric",
            factory="fourm_core.viz.rendering:RecordDecoder",
            description="The metadata record as a name: value table.",
        )
    )
