"""ImageBind feature maps (ml-4m ``tok_imagebind@224``, 8192 codes, patch 14) as discrete tokens.

ImageBind's image tower is the frozen OpenCLIP ViT-H/14 (LAION-2B); timm ships it as
``vit_huge_patch14_clip_224.laion2b``. Patch tokens and CLS are taken after the final norm, 1280-d, before the
1024-d joint projection, as the tokenizers of ``imagebind`` and ``imagebind_global`` expect.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: Without weights: a seeded random ViT-Tiny with 14 px patches and a random projection to 1280, reported as such.
TEACHER = fp.TeacherConfig(
    model="vit_huge_patch14_clip_224.laion2b",
    patch_size=14,
    feature_dim=1280,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_IMAGEBIND_WEIGHTS",
)

IMAGEBIND = fp.feature_map_modality(
    "imagebind",
    "tok_imagebind",
    TEACHER,
    notes="VQ-VAE on ImageBind-H/14 patch features (16x16x1280 at 224 px)",
    pooled_description="ImageBind-H/14 CLS embedding after the final norm (what imagebind_global tokenizes)",
    description="ImageBind-H/14 patch feature maps (16x16 tokens at 224 px).",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_ImageBind-H14_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=16,
        resolution="224-448",
        notes="ViT VQ-VAE on ImageBind-H/14 patch tokens (1280); the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        "ImageBind-H/14 (OpenCLIP ViT-H/14) patch features and CLS (weights from $FOURM_IMAGEBIND_WEIGHTS"
        " or the timm cache, else a seeded random-init ViT-Tiny/14, reported as such)."
    ),
)


fourm_register_modalities = fp.declare(IMAGEBIND)
