"""Albedo (reflectance) as discrete image tokens: a 22nd modality that proves the plugin contract.

The synthetic world renders albedo exactly (the colour of each surface before lighting), so this plugin has honest
ground truth; it reuses the generic ViT VQ-VAE tokenizer family like depth or normals, and adds no code to the core.
Photos have no offline albedo labeler, so the source labeler is skipped for them (the source has no ``albedo``).
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

ALBEDO = fp.image_token_modality(
    "albedo",
    "tok_albedo",
    fp.TokenizerConfig(family="vit_vqvae", loss="mse", transform="color", notes="linear albedo in [0, 1]"),
    vocab=(8192, 512),
    uses=("rgb",),
    arrays=(fp.pixel_array("albedo", "float16", "linear reflectance, 0..1", channels=3),),
    labelers=(fp.source_labeler({"albedo": "albedo"}, description="Exact reflectance rendered by the source."),),
    description="Surface reflectance before lighting (intrinsic image decomposition target).",
)

fourm_register_modalities = fp.declare(ALBEDO)
