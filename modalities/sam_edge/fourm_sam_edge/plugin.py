"""SAM edges (ml-4m ``tok_sam_edge@224``, 8192 codes): edges of the instance map, with the shared edge tokenizer."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="sam_edge",
    key="tok_sam_edge",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    depends_on=("sam_instance",),
    tokenizer=TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        input_channels=1,
        shared_as="edge",
        transform="edges",
        notes="one edge tokenizer shared with canny_edge, as in the paper",
    ),
    storage=(
        ArraySpec(
            name="edges", dtype="uint8", shape=("H", "W"), description="binary edge map of the instance map, 0/255"
        ),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Edges of the SAM-style instance map.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the sam_edge modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """Boundaries of the stored instance map."""
    register(
        LabelerSpec(
            modality="sam_edge",
            name="instance_edges",
            factory="fourm_sam_edge.labelers:edges_labeler",
            default=True,
            requires=("modality:sam_instance",),
            description="Boundaries of the stored instance map.",
        )
    )
