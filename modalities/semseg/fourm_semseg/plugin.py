"""Semantic segmentation (ml-4m ``tok_semseg@224``, 4096 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, ModalitySpec, TokenizerConfig, grid_presets

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
    tokenizer=TokenizerConfig(family="vit_vqvae", loss="cross_entropy", input_channels=1, num_classes=134, notes="class embedding in, per-pixel cross-entropy out; index 0 = unlabelled"),
    storage=(
        ArraySpec(name="semseg", dtype="int16", shape=("H", "W"), description="class index, 0 = unlabelled"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Semantic classes (133 COCO-panoptic-like classes + unlabelled).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the semseg modality."""
    register(SPEC)
