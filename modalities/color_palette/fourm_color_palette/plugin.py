"""Colour palettes (ml-4m ``color_palette``): ``v1=n`` then ``v0=r v0=g v0=b`` for each of n = 1..7 colours."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, DecoderSpec, LabelerSpec, ModalitySpec, PresetLayout, SerializerSpec

SPEC = ModalitySpec(
    name="color_palette",
    key="color_palette",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="span",
    presets={"paper": PresetLayout(max_tokens=23), "tiny": PresetLayout(max_tokens=23)},
    depends_on=("rgb",),
    storage=(
        ArraySpec(
            name="palettes",
            dtype="json",
            ragged=True,
            description="{n: [[r, g, b] x n]} for n = 1..7; one n is drawn per sample",
        ),
    ),
    description="Dominant colours of the image; the palette size is drawn at random per sample, as in ml-4m.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the color_palette modality."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the palette codec."""
    register(SerializerSpec(modality="color_palette", factory="fourm_color_palette.serializer:PaletteSerializer"))


@hookimpl
def fourm_register_labelers(register):
    """Median-cut palettes of 1..7 colours."""
    register(
        LabelerSpec(
            modality="color_palette",
            name="median_cut",
            factory="fourm_color_palette.labelers:median_cut_labeler",
            default=True,
            requires=("modality:rgb",),
            description="Median-cut palettes of 1..7 colours.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="color_palette",
            factory="fourm_color_palette.decoders:PaletteDecoder",
            description="The palette as side-by-side swatches.",
        )
    )
