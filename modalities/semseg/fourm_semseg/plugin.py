"""Semantic segmentation (ml-4m ``tok_semseg@224``, 4096 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core import plugin as fp
from fourm_semseg.classes import COUNTABLE, NUM_THINGS, PANOPTIC_CLASSES, WALKABLE

FOURM_CONTRACT = 2

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
    labelers=(
        fp.source_labeler(
            {"semseg": "semantic"}, description="Exact class map (COCO-panoptic index + 1) from the synthetic world."
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
