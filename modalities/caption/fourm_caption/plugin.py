"""Captions (ml-4m ``caption``): free text in the shared WordPiece vocabulary, span-masked with sentinels."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec

SPEC = ModalitySpec(
    name="caption",
    key="caption",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="span",
    presets={"paper": PresetLayout(max_tokens=256), "tiny": PresetLayout(max_tokens=48)},
    tokenizer=None,
    storage=(ArraySpec(name="text", dtype="text", ragged=True, description="one caption"),),
    description="Image captions (scene-graph captions for the synthetic world, sidecar .txt files for photos).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the caption modality."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the caption codec (whitespace normalisation, reserved-token check)."""
    register(SerializerSpec(modality="caption", factory="fourm_caption.serializer:CaptionSerializer"))


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="caption",
            name="source",
            factory="fourm_caption.labelers:source_labeler",
            default=True,
            requires=("source:caption",),
            description="The source's caption (scene-graph caption, or a photo's sidecar .txt).",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="caption",
            factory="fourm_caption.decoders:CaptionDecoder",
            description="The caption as wrapped text on white.",
        )
    )
