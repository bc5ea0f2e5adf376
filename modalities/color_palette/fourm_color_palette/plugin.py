"""Colour palettes (ml-4m ``color_palette``): ``v1=n`` then ``v0=r v0=g v0=b`` for each of n = 1..7 colours."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: every palette size is stored; the serializer draws one per sample
PALETTES = fp.ArraySpec(
    name="palettes",
    dtype="json",
    ragged=True,
    description="{n: [[r, g, b] x n]} for n = 1..7; one n is drawn per sample",
)

COLOR_PALETTE = fp.sequence_modality(
    "color_palette",
    "color_palette",
    max_tokens=(23, 23),
    depends_on=("rgb",),
    storage=(PALETTES,),
    labelers=(
        fp.labeler(
            "median_cut",
            "fourm_color_palette.labelers:median_cut_labeler",
            requires=("modality:rgb",),
            description="Median-cut palettes of 1..7 colours.",
        ),
    ),
    serializer="fourm_color_palette.serializer:PaletteSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_color_palette.decoders:PaletteDecoder", description="The palette as side-by-side swatches."
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER),
    description="Dominant colours of the image; the palette size is drawn at random per sample, as in ml-4m.",
)

fourm_register_modalities = fp.declare(COLOR_PALETTE)
