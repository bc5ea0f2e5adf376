"""Labelers of the clip modality (imported lazily, only when labeling runs): a CLIP-B/16 feature teacher."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.teachers import FeatureTeacher, TeacherConfig
from fourm_core.spec import ModalitySpec

#: The paper's teacher: OpenAI CLIP-B/16; patch tokens go through CLIP's projection (768 -> 512), as the tokenizer
#: expects. Without weights: a seeded random ViT-Tiny/16 with a random projection to 512, reported as random-init.
TEACHER = TeacherConfig(
    model="vit_base_patch16_clip_224.openai",
    patch_size=16,
    feature_dim=512,
    project=True,
    input_modality="rgb",
    input_array="rgb",
    patch_array="features",
    fallback_model="vit_tiny_patch16_224",
    weights_env="FOURM_CLIP_WEIGHTS",
)


def teacher_labeler(spec: ModalitySpec, context: LabelContext) -> FeatureTeacher:
    """CLIP-B/16 patch features resized to the preset's grid (weights from $FOURM_CLIP_WEIGHTS or the cache)."""
    return FeatureTeacher(spec, context, TEACHER)
