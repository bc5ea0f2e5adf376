"""Depth (ml-4m ``tok_depth@224``, 8192 codes): metric depth maps as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="depth",
    key="tok_depth",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    depends_on=(),
    tokenizer=TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        input_channels=1,
        transform="robust_depth",
        notes="robust standardisation (10%..90% band) before encoding",
    ),
    storage=(
        ArraySpec(name="depth", dtype="float32", shape=("H", "W"), description="metric depth in metres, 0 = invalid"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Metric depth; the tokenizer sees robustly standardised depth.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the depth modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="depth",
            name="source",
            factory="fourm_depth.labelers:source_labeler",
            default=True,
            requires=("source:depth",),
            description="Exact metric depth from the synthetic world's renderer.",
        )
    )
