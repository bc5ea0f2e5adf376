"""3D human poses (ml-4m ``human_poses``): per person a box, global orientation, 8 pose-codebook tokens, shape and
camera, written with value tokens in the official order-randomised format; ``none`` when there is nobody."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

KEYWORDS = ("human", "pose", "global", "camera", "shape", "none")

#: the body pose of each person (23 joints x 3x3 rotations) is what the tokenizer turns into 8 codes
POSE_TOKENIZER = fp.TokenizerConfig(
    family="mlp_memcodes",
    loss="smooth_l1",
    input_channels=207,
    codebook={"paper": 1024, "tiny": 256},
    tokens_per_item=8,
    transform="vectors",
    items="fourm_human_poses.tokenizing:pose_items",
    evaluator="fourm_human_poses.tokenizing:joint_error",
    notes="body pose (23 joints x 3x3 rotations = 207 values) to 8 Memcodes tokens",
)

HUMANS = fp.ArraySpec(
    name="humans",
    dtype="json",
    ragged=True,
    description="[{bbox, global_orient[9], body_pose[207], pose_tokens[8], betas[10], camera[3]}]",
)

HUMAN_POSES = fp.sequence_modality(
    "human_poses",
    "human_poses",
    max_tokens=(275, 120),
    vocab_words=KEYWORDS,
    tokenizer=POSE_TOKENIZER,
    storage=(HUMANS, fp.item_tokens_array("humans")),
    labelers=(
        fp.source_labeler(
            {"humans": "humans"}, description="Exact 3D poses, shapes and boxes of the synthetic figures."
        ),
        fp.labeler(
            "hmr2",
            "fourm_human_poses.teachers:build",
            default=False,
            requires=("package:hmr2",),
            description=(
                "The paper's teacher, 4D-Humans (HMR 2.0): not packaged (installs from git, needs detectron2 and "
                "the licence-gated SMPL files), so photos are skipped with this reason; no fake poses."
            ),
        ),
    ),
    serializer="fourm_human_poses.serializer:HumanPoseSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_human_poses.decoders:HumanPoseDecoder",
        description="Skeletons (pose tokens decoded by the pose tokenizer) over the input picture.",
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_human-poses_1k_8",
        normalisation="none",
        tokens_per_item=8,
        max_length=263,
        text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER,
        notes="bottleneck MLP + Memcodes (8 heads) on the 207-d SMPL body pose (23 rotation matrices), as stored",
    ),
    description="3D human poses and shapes (SMPL-style parameters) with their boxes.",
)

fourm_register_modalities = fp.declare(HUMAN_POSES)
