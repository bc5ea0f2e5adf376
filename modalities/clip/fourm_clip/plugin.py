"""CLIP feature maps (ml-4m ``tok_clip@224``, 8192 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The paper's teacher: OpenAI CLIP-B/16; patch tokens go through CLIP's projection (768 -> 512), as the tokenizer
#: expects. Without weights: a seeded random ViT-Tiny/16 with a random projection to 512, reported as random-init.
TEACHER = fp.TeacherConfig(
    model="vit_base_patch16_clip_224.openai",
    patch_size=16,
    feature_dim=512,
    project=True,
    input_modality="rgb",
    input_array="rgb",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_CLIP_WEIGHTS",
)

CLIP = fp.feature_map_modality(
    "clip",
    "tok_clip",
    TEACHER,
    notes="VQ-VAE on CLIP-B/16 patch features (14x14x512 at 224 px)",
    description="CLIP-B/16 patch feature maps.",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_CLIP-B16_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=14,
        resolution="224-448",
        notes="ViT VQ-VAE on CLIP-B/16 final patch tokens projected to 512; the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        "CLIP-B/16 patch features (OpenAI weights from $FOURM_CLIP_WEIGHTS or the timm cache,"
        " else a seeded random-init ViT-Tiny/16, reported as such)."
    ),
)


fourm_register_modalities = fp.declare(CLIP)
