"""CLIP feature maps (ml-4m ``tok_clip@224``, 8192 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="clip",
    key="tok_clip",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    depends_on=("rgb",),
    tokenizer=TokenizerConfig(
        family="vit_vqvae",
        loss="smooth_l1",
        input_channels=512,
        transform="features",
        notes="VQ-VAE on CLIP-B/16 patch features (14x14x512 at 224 px)",
    ),
    storage=(
        ArraySpec(name="features", dtype="float16", shape=("h", "w", "C"), description="teacher patch features"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="CLIP-B/16 patch feature maps.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the clip modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The feature teacher (default); torch and timm are imported only when it runs."""
    register(
        LabelerSpec(
            modality="clip",
            name="teacher",
            factory="fourm_clip.labelers:teacher_labeler",
            default=True,
            requires=("modality:rgb", "package:torch", "package:timm"),
            description=(
                "CLIP-B/16 patch features (OpenAI weights from $FOURM_CLIP_WEIGHTS or the timm cache,"
                " else a seeded random-init ViT-Tiny/16, reported as such)."
            ),
        )
    )
