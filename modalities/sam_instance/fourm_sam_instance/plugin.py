"""SAM-style instances (ml-4m ``sam_instance``): query points, each followed by the instances containing it as a box
and 16 mask-codebook tokens (``point v0=y v1=x polygon v0=.. v1=.. v2=.. v3=.. <16 tokens> ...`` or ``none``)."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import (
    ArraySpec,
    DecoderSpec,
    LabelerSpec,
    ModalitySpec,
    PresetLayout,
    SerializerSpec,
    TokenizerConfig,
    item_tokens_array,
)

KEYWORDS = ("point", "polygon", "none")

SPEC = ModalitySpec(
    name="sam_instance",
    key="sam_instance",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="span",
    presets={"paper": PresetLayout(max_tokens=290), "tiny": PresetLayout(max_tokens=128)},
    uses=("rgb",),
    vocab_words=KEYWORDS,
    tokenizer=TokenizerConfig(
        family="mask_vqvae",
        loss="binary_cross_entropy",
        input_channels=1,
        codebook={"paper": 1024, "tiny": 256},
        tokens_per_item=16,
        transform="masks",
        items="fourm_sam_instance.tokenizing:mask_items",
        item_size={"paper": 64, "tiny": 32},
        notes="64x64 instance masks (32x32 in tiny) to a 4x4 grid of tokens",
    ),
    storage=(
        ArraySpec(name="instances", dtype="int32", shape=("H", "W"), description="instance id per pixel, 0 = none"),
        ArraySpec(name="boxes", dtype="int32", shape=("N", 4), ragged=True, description="xmin, ymin, xmax, ymax px"),
        item_tokens_array("boxes"),
    ),
    description="Instance segments queried by points; masks are tokenized per instance.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the sam_instance modality."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the point-query codec."""
    register(SerializerSpec(modality="sam_instance", factory="fourm_sam_instance.serializer:SamInstanceSerializer"))


@hookimpl
def fourm_register_labelers(register):
    """Exact instances from the source (default), classical segments for photos."""
    register(
        LabelerSpec(
            modality="sam_instance",
            name="source",
            factory="fourm_sam_instance.labelers:source_labeler",
            default=True,
            requires=("source:instances",),
            description="The source's instance map (exact for the synthetic world).",
        )
    )
    register(
        LabelerSpec(
            modality="sam_instance",
            name="felzenszwalb",
            factory="fourm_sam_instance.labelers:felzenszwalb_labeler",
            requires=("modality:rgb", "package:skimage"),
            description="Graph-based colour segments (scikit-image), a classical stand-in for SAM.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="sam_instance",
            factory="fourm_sam_instance.decoders:SamInstanceDecoder",
            description="Instance masks (decoded by the mask tokenizer) in distinct colours over the input picture.",
        )
    )
