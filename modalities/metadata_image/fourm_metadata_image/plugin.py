"""Image-processing metadata, one of the three members of the ``metadata`` group (ml-4m ``metadata``).

The three metadata plugins share one model key and one chunk-masked sequence; each owns the ``v1=<type>`` tags of its
fields, so the group's sequence is assembled from whichever members are installed.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.serialization import KeyValueField, KeyValueSerializer
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec

#: Type ids and binning are the official ``MetadataTransform`` table (ids are fixed so adding fields never shifts them).
FIELDS = (
    KeyValueField("original_width", 0, divisor=32, description="width before cropping, in 32-pixel bins"),
    KeyValueField("original_height", 1, divisor=32, description="height before cropping, in 32-pixel bins"),
    KeyValueField("colorfulness", 9, lo=0, hi=150, bins=50, description="Hasler & Suesstrunk colourfulness"),
    KeyValueField("brightness", 10, lo=0, hi=255, bins=50, description="mean grey level"),
    KeyValueField("contrast", 11, lo=0, hi=127, bins=50, description="grey-level standard deviation"),
    KeyValueField("saturation", 12, lo=0, hi=255, bins=50, description="mean HSV saturation"),
    KeyValueField("entropy", 13, lo=0, hi=10, bins=50, description="grey-level histogram entropy, bits"),
    KeyValueField("watermark_score", 19, edges=(0.5,), description="probability of a watermark (needs a model)"),
    KeyValueField("aesthetic_score", 20, edges=(4.5, 5.5), description="aesthetic rating (needs a model)"),
)

#: ml-4m reserves 40 tokens, which cannot hold all 21 fields plus EOS; fourm reserves 2*21+1 (sequence length is not
#: part of the checkpoint layout, so official weights still load). Every member of the group declares the same.
METADATA_PRESETS = {"paper": PresetLayout(max_tokens=43), "tiny": PresetLayout(max_tokens=43)}

SPEC = ModalitySpec(
    name="metadata_image",
    key="metadata",
    group="metadata",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="chunk",
    presets=METADATA_PRESETS,
    depends_on=("rgb",),
    chunk_tags=tuple(f.tag for f in FIELDS),
    storage=(ArraySpec(name="values", dtype="json", ragged=True, description="{field: raw value}"),),
    description="Image size, colourfulness, brightness, contrast, saturation, entropy (+ model-based scores).",
)


def build_serializer() -> KeyValueSerializer:
    """The ``v1=type v0=bin`` codec of this member's fields."""
    return KeyValueSerializer("metadata_image", FIELDS)


@hookimpl
def fourm_register_modalities(register):
    """Register the metadata_image member of the metadata group."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the chunk codec."""
    register(SerializerSpec(modality="metadata_image", factory="fourm_metadata_image.plugin:build_serializer"))


@hookimpl
def fourm_register_labelers(register):
    """Luma/HSV statistics, colourfulness and original size."""
    register(
        LabelerSpec(
            modality="metadata_image",
            name="statistics",
            factory="fourm_metadata_image.labelers:image_metadata_labeler",
            default=True,
            requires=("modality:rgb",),
            description="Luma/HSV statistics, colourfulness and original size.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="metadata_image",
            factory="fourm_core.viz.rendering:RecordDecoder",
            description="The metadata record as a name: value table.",
        )
    )
