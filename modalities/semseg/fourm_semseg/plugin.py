"""Semantic segmentation (ml-4m ``tok_semseg@224``, 4096 codes) as discrete tokens.

Labelers, tried in this order: the synthetic world's exact class map (``source``), then, for photos, the paper's own
teacher: Mask2Former Swin-B trained on COCO panoptic (``facebook/mask2former-swin-base-coco-panoptic`` through
transformers, :mod:`fourm_semseg.teachers`), its semantic output mapped by name to the 133 COCO-panoptic classes and
stored as index + 1.
"""

from __future__ import annotations

from fourm_core import plugin as fp
from fourm_semseg.classes import COUNTABLE, NUM_THINGS, PANOPTIC_CLASSES, WALKABLE

FOURM_CONTRACT = 2

#: The paper's semseg teacher ("COCO Mask2Former with a SwinB backbone"), as transformers hosts it. Pinned to the
#: commit that adds ``model.safetensors`` (the hub's safetensors conversion, refs/pr/3): the repo's main branch holds
#: only a pickled ``pytorch_model.bin``, which fourm never loads.
TEACHER = fp.HubModel(
    model_id="facebook/mask2former-swin-base-coco-panoptic",
    library="transformers",
    revision="853c97b51d851289775a7fcc82208fe10167b8ed",
    files=("config.json", "model.safetensors"),
    note="the paper's teacher: Mask2Former Swin-B, COCO panoptic (133 classes)",
)
#: The teacher's input side: the checkpoint's own preprocessing size (its preprocessor_config.json: 384 x 384).
TEACHER_RESOLUTION = 384

SEMSEG = fp.image_token_modality(
    "semseg",
    "tok_semseg",
    fp.TokenizerConfig(
        family="vit_vqvae",
        loss="cross_entropy",
        num_classes=134,
        transform="classes",
        notes="class embedding in, per-pixel cross-entropy out; index 0 = unlabelled",
    ),
    vocab=(4096, 256),
    arrays=(fp.pixel_array("semseg", "int16", "class index, 0 = unlabelled"),),
    uses=("rgb",),
    labelers=(
        fp.source_labeler(
            {"semseg": "semantic"}, description="Exact class map (COCO-panoptic index + 1) from the synthetic world."
        ),
        fp.teacher_labeler(
            "fourm_semseg.teachers:build",
            TEACHER,
            name="mask2former",
            requires=("modality:rgb",),
            options={"resolution": TEACHER_RESOLUTION, "batch_size": 8},
            description=(
                f"The paper's teacher, Mask2Former Swin-B COCO panoptic ({TEACHER.model_id}, transformers) at "
                f"{TEACHER_RESOLUTION} px: semantic inference (class x mask probabilities, argmax) at the store's "
                "size, classes matched by name to the 133 COCO-panoptic classes, stored as index + 1."
            ),
        ),
    ),
    class_names=("unlabelled", *PANOPTIC_CLASSES),
    class_sets={
        "things": range(1, NUM_THINGS + 1),
        "walkable": [i + 1 for i in WALKABLE],
        "countable": [i + 1 for i in COUNTABLE],
    },
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_semseg_4k_224-448",
        normalisation="semseg_shift_one",
        grid=14,
        resolution="224-448",
        notes="ViT VQ-VAE with a class embedding; fourm stores index + 1, which is ml-4m's shifted form",
    ),
    description="Semantic classes (133 COCO-panoptic classes + unlabelled), stored as index + 1.",
)

fourm_register_modalities = fp.declare(SEMSEG)
