"""DINOv2 feature maps (ml-4m ``tok_dinov2@224``, 8192 codes, patch 14) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="dinov2",
    key="tok_dinov2",
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
        input_channels=768,
        transform="features",
        notes="VQ-VAE on DINOv2-B/14 patch features (16x16x768 at 224 px)",
    ),
    storage=(
        ArraySpec(name="features", dtype="float16", shape=("h", "w", "C"), description="teacher patch features"),
        ArraySpec(
            name="cls",
            dtype="float32",
            shape=("C",),
            description="DINOv2-B/14 CLS embedding after the final norm (what dinov2_global tokenizes)",
        ),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="DINOv2-B/14 patch feature maps (16x16 tokens at 224 px).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the dinov2 modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The feature teacher (default); torch and timm are imported only when it runs."""
    register(
        LabelerSpec(
            modality="dinov2",
            name="teacher",
            factory="fourm_dinov2.labelers:teacher_labeler",
            default=True,
            requires=("modality:rgb", "package:torch", "package:timm"),
            description=(
                "DINOv2-B/14 patch features and CLS (weights from $FOURM_DINOV2_WEIGHTS or the timm cache,"
                " else a seeded random-init ViT-Tiny/14, reported as such)."
            ),
        )
    )
