"""Labelers of the dinov2 modality (imported lazily, only when labeling runs): a DINOv2-B/14 feature teacher."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.teachers import FeatureTeacher, TeacherConfig
from fourm_core.spec import ModalitySpec

#: The paper's teacher: DINOv2-B/14 (768-d patch tokens and CLS after the final norm). Without weights: a seeded
#: random ViT-Tiny with 14 px patches and a random projection to 768, reported as random-init.
TEACHER = TeacherConfig(
    model="vit_base_patch14_dinov2.lvd142m",
    patch_size=14,
    feature_dim=768,
    project=False,
    input_modality="rgb",
    input_array="rgb",
    patch_array="features",
    pooled_array="cls",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_DINOV2_WEIGHTS",
)


def teacher_labeler(spec: ModalitySpec, context: LabelContext) -> FeatureTeacher:
    """DINOv2-B/14 patch features and CLS embedding (weights from $FOURM_DINOV2_WEIGHTS or the cache)."""
    return FeatureTeacher(spec, context, TEACHER)
