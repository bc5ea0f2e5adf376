"""Bounding boxes (ml-4m ``det``): ``v0=xmin v1=ymin v2=xmax v3=ymax class`` per box, nearest the origin first.

Labelers, tried in this order: the synthetic world's exact boxes (``source``), then, for photos, a COCO detector
through transformers (:mod:`fourm_det.teachers`). The paper's ViTDet-H has no maintained loader; its stand-in is the
strongest COCO detector transformers loads, D-FINE-X pre-trained on Objects365 and fine-tuned on COCO
(``ustc-community/dfine-xlarge-obj2coco``, 59.3 box AP), keeping boxes that score at least 0.6.
"""

from __future__ import annotations

from fourm_core import plugin as fp
from fourm_det.classes import COCO_CLASSES

FOURM_CONTRACT = 2

#: The photo teacher, standing in for the paper's ViTDet-H (see the module docstring).
TEACHER = fp.HubModel(
    model_id="ustc-community/dfine-xlarge-obj2coco",
    library="transformers",
    files=("config.json", "model.safetensors"),
    note="stands in for the paper's ViTDet-H (no maintained loader): D-FINE-X, Objects365 -> COCO, 59.3 box AP",
)
#: D-FINE's own input size (its preprocessor resizes to 640 x 640).
TEACHER_RESOLUTION = 640
#: Boxes scoring below this are not stored; it is the det string's threshold (ml-4m's ``det_threshold``).
MIN_SCORE = 0.6

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
    uses=("rgb",),
    labelers=(
        fp.source_labeler(
            {"boxes": "boxes"}, description="Exact boxes of every visible thing from the synthetic world."
        ),
        fp.teacher_labeler(
            "fourm_det.teachers:build",
            TEACHER,
            name="dfine",
            requires=("modality:rgb",),
            options={"resolution": TEACHER_RESOLUTION, "batch_size": 8, "min_score": MIN_SCORE},
            description=(
                f"D-FINE-X Objects365->COCO ({TEACHER.model_id}, transformers) at {TEACHER_RESOLUTION} px, boxes "
                f"scoring >= {MIN_SCORE} with their COCO names; stands in for the paper's ViTDet-H, which no "
                "maintained package loads."
            ),
        ),
    ),
    serializer="fourm_det.serializer:DetSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_det.decoders:DetDecoder", description="Boxes and class names drawn over the input picture."
    ),
    official=fp.OfficialAssets(
        normalisation="none", text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER, file_form="fourm_det.official_form:FORM"
    ),
    description="Object boxes with class names; scores below 0.6 are dropped when serialising, as in ml-4m.",
)

fourm_register_modalities = fp.declare(DET)
