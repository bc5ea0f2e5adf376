"""RGB as discrete tokens (ml-4m ``tok_rgb@224``, 16384 codes at 224 px): the way 4M *predicts* images."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="tok_rgb",
    key="tok_rgb",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(16384, 1024),
    depends_on=("rgb",),
    tokenizer=TokenizerConfig(
        family="divae",
        loss="mse",
        input_channels=3,
        transform="color",
        source="rgb.rgb",
        notes="ViT VQ-VAE encoder, diffusion decoder; RGB in [-1, 1]",
    ),
    storage=(
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="RGB image tokens; the tokenizer's decoder turns predictions back into pictures.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the tok_rgb modality."""
    register(SPEC)
