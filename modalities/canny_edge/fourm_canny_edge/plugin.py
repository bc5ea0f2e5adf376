"""Canny edges (ml-4m ``tok_canny_edge@224``, 8192 codes) as discrete tokens, with the shared edge tokenizer."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="canny_edge",
    key="tok_canny_edge",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    depends_on=("rgb",),
    tokenizer=TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        input_channels=1,
        shared_as="edge",
        transform="edges",
        notes="one edge tokenizer shared with sam_edge, as in the paper",
    ),
    storage=(
        ArraySpec(name="edges", dtype="uint8", shape=("H", "W"), description="binary edge map, 0/255"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Canny edges of the RGB image.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the canny_edge modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """Auto-threshold OpenCV Canny on the RGB image."""
    register(
        LabelerSpec(
            modality="canny_edge",
            name="canny",
            factory="fourm_canny_edge.labelers:canny_labeler",
            default=True,
            requires=("modality:rgb",),
            description="Auto-threshold OpenCV Canny on the RGB image.",
        )
    )
