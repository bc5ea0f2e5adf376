"""3D human poses (ml-4m ``human_poses``): per person a box, global orientation, 8 pose-codebook tokens, shape and
camera, written with value tokens in the official order-randomised format; ``none`` when there is nobody."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import (
    ArraySpec,
    DecoderSpec,
    LabelerSpec,
    ModalitySpec,
    PresetLayout,
    SerializerSpec,
    TokenizerConfig,
    item_tokens_array,
)

KEYWORDS = ("human", "pose", "global", "camera", "shape", "none")

SPEC = ModalitySpec(
    name="human_poses",
    key="human_poses",
    kind="sequence",
    embedding="1d",
    vocabulary="text",
    masking="span",
    presets={"paper": PresetLayout(max_tokens=275), "tiny": PresetLayout(max_tokens=120)},
    vocab_words=KEYWORDS,
    tokenizer=TokenizerConfig(
        family="mlp_memcodes",
        loss="smooth_l1",
        input_channels=207,
        codebook={"paper": 1024, "tiny": 256},
        tokens_per_item=8,
        transform="vectors",
        items="fourm_human_poses.tokenizing:pose_items",
        evaluator="fourm_human_poses.tokenizing:joint_error",
        notes="body pose (23 joints x 3x3 rotations = 207 values) to 8 Memcodes tokens",
    ),
    storage=(
        ArraySpec(
            name="humans",
            dtype="json",
            ragged=True,
            description="[{bbox, global_orient[9], body_pose[207], pose_tokens[8], betas[10], camera[3]}]",
        ),
        item_tokens_array("humans"),
    ),
    description="3D human poses and shapes (SMPL-style parameters) with their boxes.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the human_poses modality."""
    register(SPEC)


@hookimpl
def fourm_register_serializers(register):
    """Register the pose codec."""
    register(SerializerSpec(modality="human_poses", factory="fourm_human_poses.serializer:HumanPoseSerializer"))


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="human_poses",
            name="source",
            factory="fourm_human_poses.labelers:source_labeler",
            default=True,
            requires=("source:humans",),
            description="Exact 3D poses, shapes and boxes of the synthetic figures.",
        )
    )


@hookimpl
def fourm_register_decoders(register):
    """The picture of a generated value."""
    register(
        DecoderSpec(
            modality="human_poses",
            factory="fourm_human_poses.decoders:HumanPoseDecoder",
            description="Skeletons (pose tokens decoded by the pose tokenizer) over the input picture.",
        )
    )
