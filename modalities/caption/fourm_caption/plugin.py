"""Captions (ml-4m ``caption``): free text in the shared WordPiece vocabulary, span-masked with sentinels."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

CAPTION = fp.sequence_modality(
    "caption",
    "caption",
    max_tokens=(256, 48),
    storage=(fp.ArraySpec(name="text", dtype="text", ragged=True, description="one caption"),),
    labelers=(
        fp.source_labeler(
            {"text": "caption"},
            allow_empty=False,
            description="The source's caption (scene-graph caption, or a photo's sidecar .txt).",
        ),
    ),
    serializer="fourm_caption.serializer:CaptionSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_caption.decoders:CaptionDecoder", description="The caption as wrapped text on white."
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER),
    description="Image captions (scene-graph captions for the synthetic world, sidecar .txt files for photos).",
)

fourm_register_modalities = fp.declare(CAPTION)
