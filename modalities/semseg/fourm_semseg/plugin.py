"""Semantic segmentation (ml-4m ``tok_semseg@224``, 4096 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets
from fourm_semseg.classes import COUNTABLE, NUM_THINGS, PANOPTIC_CLASSES, WALKABLE

SPEC = ModalitySpec(
    name="semseg",
    key="tok_semseg",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(4096, 256),
    depends_on=(),
    tokenizer=TokenizerConfig(
        family="vit_vqvae",
        loss="cross_entropy",
        input_channels=1,
        num_classes=134,
        transform="classes",
        notes="class embedding in, per-pixel cross-entropy out; index 0 = unlabelled",
    ),
    storage=(
        ArraySpec(name="semseg", dtype="int16", shape=("H", "W"), description="class index, 0 = unlabelled"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    class_names=("unlabelled", *PANOPTIC_CLASSES),
    class_sets={
        "things": tuple(range(1, NUM_THINGS + 1)),
        "walkable": tuple(i + 1 for i in WALKABLE),
        "countable": tuple(i + 1 for i in COUNTABLE),
    },
    description="Semantic classes (133 COCO-panoptic classes + unlabelled), stored as index + 1.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the semseg modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="semseg",
            name="source",
            factory="fourm_semseg.labelers:source_labeler",
            default=True,
            requires=("source:semantic",),
            description="Exact class map (COCO-panoptic index + 1) from the synthetic world.",
        )
    )
