"""Bounding boxes (ml-4m ``det``): ``v0=xmin v1=ymin v2=xmax v3=ymax class`` per box, nearest the origin first."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec
from fourm_det.classes import COCO_CLASSES

SPEC = ModalitySpec(
    name="det",
    key="det",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="span",
    presets={"paper": PresetLayout(max_tokens=256), "tiny": PresetLayout(max_tokens=64)},
    vocab_words=COCO_CLASSES,
    storage=(
        ArraySpec(
            name="boxes", dtype="json", ragged=True, description="[{xmin, ymin, xmax, ymax (0..1), label, score}]"
        ),
    ),
    description="Object boxes with class names; scores below 0.6 are dropped when serialising, as in ml-4m.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the det modality."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the box codec."""
    register(SerializerSpec(modality="det", factory="fourm_det.serializer:DetSerializer"))


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="det",
            name="source",
            factory="fourm_det.labelers:source_labeler",
            default=True,
            requires=("source:boxes",),
            description="Exact boxes of every visible thing from the synthetic world.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="det",
            factory="fourm_det.decoders:DetDecoder",
            description="Boxes and class names drawn over the input picture.",
        )
    )
