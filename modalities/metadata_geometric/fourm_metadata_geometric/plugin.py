"""Geometric metadata, a member of the ``metadata`` group: geometric complexity and occlusion score.

Geometric complexity is the angular variance of the normals on the unit sphere; the occlusion score is the share of
Sobel depth-edge pixels above a threshold (0.3), as the 4M-21 paper defines them.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

FIELDS = (
    fp.KeyValueField("geometric_complexity", 17, lo=0, hi=0.75, bins=50, description="angular variance of normals"),
    fp.KeyValueField("occlusion_score", 18, lo=0, hi=0.25, bins=50, description="share of strong depth edges"),
)

METADATA_GEOMETRIC = fp.key_value_modality(
    name="metadata_geometric",
    key="metadata",
    fields=FIELDS,
    max_tokens=43,
    depends_on=("depth", "normal"),
    serializer="fourm_metadata_geometric.plugin:build_serializer",
    labeler=fp.labeler(
        "geometry",
        "fourm_metadata_geometric.labelers:geometric_metadata_labeler",
        requires=(
            "modality:normal",
            "modality:depth",
        ),
        description=(
            "Angular variance of normals and Sobel occlusion edges of depth, from the store's normal and depth "
            "modalities (the renderer's on the synthetic world, the depth teacher's on photos), never the source."
        ),
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER, max_length=40),
    description="Geometric complexity (normals) and occlusion score (depth edges).",
)


def build_serializer() -> fp.KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return fp.KeyValueSerializer("metadata_geometric", FIELDS)


fourm_register_modalities = fp.declare(METADATA_GEOMETRIC)
