"""ImageBind feature maps (ml-4m ``tok_imagebind@224``, 8192 codes, patch 14) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="imagebind",
    key="tok_imagebind",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512, paper_patch=14),
    depends_on=("rgb",),
    tokenizer=TokenizerConfig(
        family="vit_vqvae",
        loss="smooth_l1",
        input_channels=1280,
        transform="features",
        notes="VQ-VAE on ImageBind-H/14 patch features (16x16x1280 at 224 px)",
    ),
    storage=(
        ArraySpec(name="features", dtype="float16", shape=("h", "w", "C"), description="teacher patch features"),
        ArraySpec(
            name="cls",
            dtype="float32",
            shape=("C",),
            description="ImageBind-H/14 CLS embedding after the final norm (what imagebind_global tokenizes)",
        ),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="ImageBind-H/14 patch feature maps (16x16 tokens at 224 px).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the imagebind modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The feature teacher (default); torch and timm are imported only when it runs."""
    register(
        LabelerSpec(
            modality="imagebind",
            name="teacher",
            factory="fourm_imagebind.labelers:teacher_labeler",
            default=True,
            requires=("modality:rgb", "package:torch", "package:timm"),
            description=(
                "ImageBind-H/14 (OpenCLIP ViT-H/14) patch features and CLS (weights from $FOURM_IMAGEBIND_WEIGHTS"
                " or the timm cache, else a seeded random-init ViT-Tiny/14, reported as such)."
            ),
        )
    )
