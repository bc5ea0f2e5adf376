"""Bounding boxes (ml-4m ``det``): ``v0=xmin v1=ymin v2=xmax v3=ymax class`` per box, nearest the origin first."""

from __future__ import annotations

from fourm_core import plugin as fp
from fourm_det.classes import COCO_CLASSES

FOURM_CONTRACT = 2

#: one record per box, coordinates normalised to the image
BOXES = fp.ArraySpec(
    name="boxes", dtype="json", ragged=True, description="[{xmin, ymin, xmax, ymax (0..1), label, score}]"
)

DET = fp.sequence_modality(
    "det",
    "det",
    max_tokens=(256, 64),
    vocab_words=COCO_CLASSES,
    storage=(BOXES,),
    labelers=(
        fp.source_labeler(
            {"boxes": "boxes"}, description="Exact boxes of every visible thing from the synthetic world."
        ),
    ),
    serializer="fourm_det.serializer:DetSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_det.decoders:DetDecoder", description="Boxes and class names drawn over the input picture."
    ),
    official=fp.OfficialAssets(normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER),
    description="Object boxes with class names; scores below 0.6 are dropped when serialising, as in ml-4m.",
)

fourm_register_modalities = fp.declare(DET)
