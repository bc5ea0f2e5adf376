"""Albedo (reflectance) as discrete image tokens: a 22nd modality that proves the plugin contract.

The synthetic world renders albedo exactly (the colour of each surface before lighting), so this plugin has honest
ground truth; it reuses the generic ViT VQ-VAE tokenizer family like depth or normals, and adds no code to the core.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="albedo",
    key="tok_albedo",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    uses=("rgb",),
    tokenizer=TokenizerConfig(
        family="vit_vqvae", loss="mse", input_channels=3, transform="color", notes="linear albedo in [0, 1]"
    ),
    storage=(
        ArraySpec(name="albedo", dtype="float16", shape=("H", "W", 3), description="linear reflectance, 0..1"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Surface reflectance before lighting (intrinsic image decomposition target).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the albedo modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """Exact albedo from the synthetic world."""
    register(
        LabelerSpec(
            modality="albedo",
            name="source",
            factory="fourm_albedo.labelers:source_labeler",
            default=True,
            requires=("source:albedo",),
            description="Exact reflectance rendered by the source.",
        )
    )
