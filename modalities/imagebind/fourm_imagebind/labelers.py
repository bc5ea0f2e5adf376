"""Labelers of the imagebind modality (imported lazily, only when labeling runs): an ImageBind-H/14 feature teacher.

ImageBind's image tower is the frozen OpenCLIP ViT-H/14 (LAION-2B); timm ships it as
``vit_huge_patch14_clip_224.laion2b``. Patch tokens and CLS are taken after the final norm, 1280-d, before the
1024-d joint projection, as the tokenizers of ``imagebind`` and ``imagebind_global`` expect.
"""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.teachers import FeatureTeacher, TeacherConfig
from fourm_core.spec import ModalitySpec

#: Without weights: a seeded random ViT-Tiny with 14 px patches and a random projection to 1280, reported as such.
TEACHER = TeacherConfig(
    model="vit_huge_patch14_clip_224.laion2b",
    patch_size=14,
    feature_dim=1280,
    project=False,
    input_modality="rgb",
    input_array="rgb",
    patch_array="features",
    pooled_array="cls",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_IMAGEBIND_WEIGHTS",
)


def teacher_labeler(spec: ModalitySpec, context: LabelContext) -> FeatureTeacher:
    """ImageBind-H/14 patch features and CLS embedding (weights from $FOURM_IMAGEBIND_WEIGHTS or the cache)."""
    return FeatureTeacher(spec, context, TEACHER)
