"""Semantic metadata, a member of the ``metadata`` group: counts and shares computed from other modalities.

Crowdedness (humans), SAM and COCO clutter, instance and semantic diversity, walkability and objectness (shares of
pixels in class sets the semseg plugin declares) and caption length, as the 4M-21 paper defines them.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

FIELDS = (
    fp.KeyValueField("caption_n_chars", 2, description="characters in the caption"),
    fp.KeyValueField("caption_n_words", 3, description="words in the caption"),
    fp.KeyValueField("caption_n_sentences", 4, description="sentences in the caption"),
    fp.KeyValueField("n_humans", 5, description="crowdedness: number of humans"),
    fp.KeyValueField("n_sam_instances", 6, description="SAM clutter: number of instances"),
    fp.KeyValueField("n_coco_instances", 7, description="COCO clutter: number of detected objects"),
    fp.KeyValueField("coco_instance_diversity", 8, description="number of distinct detected classes"),
    fp.KeyValueField("walkability", 14, lo=0, hi=1, bins=50, description="share of pixels in walkable classes"),
    fp.KeyValueField("objectness", 15, lo=0, hi=1, bins=50, description="share of pixels in countable classes"),
    fp.KeyValueField("semantic_diversity", 16, description="number of distinct semantic classes"),
)

METADATA_SEMANTIC = fp.key_value_modality(
    name="metadata_semantic",
    key="metadata",
    fields=FIELDS,
    max_tokens=43,
    uses=("caption", "det", "human_poses", "sam_instance", "semseg"),
    serializer="fourm_metadata_semantic.plugin:build_serializer",
    labeler=fp.labeler(
        "counts",
        "fourm_metadata_semantic.labelers:semantic_metadata_labeler",
        description=(
            "Counts and class-set shares from the other modalities' stored labels (ground truth copies or teachers),"
            " boxes counted at score >= 0.6."
        ),
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER, max_length=40),
    description="Crowdedness, clutter, diversity, walkability, objectness, caption length.",
)


def build_serializer() -> fp.KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return fp.KeyValueSerializer("metadata_semantic", FIELDS)


fourm_register_modalities = fp.declare(METADATA_SEMANTIC)
