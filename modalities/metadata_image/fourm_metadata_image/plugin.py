"""Image-processing metadata, one of the three members of the ``metadata`` group (ml-4m ``metadata``).

The three metadata plugins share one model key and one chunk-masked sequence; each owns the ``v1=<type>`` tags of its
fields, so the group's sequence is assembled from whichever members are installed.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

FIELDS = (
    fp.KeyValueField("original_width", 0, divisor=32, description="width before cropping, in 32-pixel bins"),
    fp.KeyValueField("original_height", 1, divisor=32, description="height before cropping, in 32-pixel bins"),
    fp.KeyValueField("colorfulness", 9, lo=0, hi=150, bins=50, description="Hasler & Suesstrunk colourfulness"),
    fp.KeyValueField("brightness", 10, lo=0, hi=255, bins=50, description="mean grey level"),
    fp.KeyValueField("contrast", 11, lo=0, hi=127, bins=50, description="grey-level standard deviation"),
    fp.KeyValueField("saturation", 12, lo=0, hi=255, bins=50, description="mean HSV saturation"),
    fp.KeyValueField("entropy", 13, lo=0, hi=10, bins=50, description="grey-level histogram entropy, bits"),
    fp.KeyValueField("watermark_score", 19, edges=(0.5,), description="probability of a watermark (needs a model)"),
    fp.KeyValueField("aesthetic_score", 20, edges=(4.5, 5.5), description="aesthetic rating (needs a model)"),
)

#: ml-4m reserves 40 tokens, which cannot hold all 21 fields plus EOS; fourm reserves 2*21+1 (sequence length is not
#: part of the checkpoint layout, so official weights still load). Every member of the group declares the same.
METADATA_IMAGE = fp.key_value_modality(
    name="metadata_image",
    key="metadata",
    fields=FIELDS,
    max_tokens=43,
    depends_on=("rgb",),
    serializer="fourm_metadata_image.plugin:build_serializer",
    labeler=fp.labeler(
        "statistics",
        "fourm_metadata_image.labelers:image_metadata_labeler",
        requires=("modality:rgb",),
        description="Luma/HSV statistics, colourfulness and original size.",
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER, max_length=40),
    description="Image size, colourfulness, brightness, contrast, saturation, entropy (+ model-based scores).",
)


def build_serializer() -> fp.KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return fp.KeyValueSerializer("metadata_image", FIELDS)


fourm_register_modalities = fp.declare(METADATA_IMAGE)
