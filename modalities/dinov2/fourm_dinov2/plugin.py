"""DINOv2 feature maps (ml-4m ``tok_dinov2@224``, 8192 codes, patch 14) as discrete tokens."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The paper's teacher: DINOv2-B/14 (768-d patch tokens and CLS after the final norm). Without weights: a seeded
#: random ViT-Tiny with 14 px patches and a random projection to 768, reported as random-init.
TEACHER = fp.TeacherConfig(
    model="vit_base_patch14_dinov2.lvd142m",
    patch_size=14,
    feature_dim=768,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_DINOV2_WEIGHTS",
)

DINOV2 = fp.feature_map_modality(
    "dinov2",
    "tok_dinov2",
    TEACHER,
    notes="VQ-VAE on DINOv2-B/14 patch features (16x16x768 at 224 px)",
    pooled_description="DINOv2-B/14 CLS embedding after the final norm (what dinov2_global tokenizes)",
    description="DINOv2-B/14 patch feature maps (16x16 tokens at 224 px).",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_DINOv2-B14_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=16,
        resolution="224-448",
        notes="ViT VQ-VAE on DINOv2-B/14 x_norm_patchtokens (768); the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        "DINOv2-B/14 patch features and CLS (weights from $FOURM_DINOV2_WEIGHTS or the timm cache,"
        " else a seeded random-init ViT-Tiny/14, reported as such)."
    ),
)


fourm_register_modalities = fp.declare(DINOV2)
