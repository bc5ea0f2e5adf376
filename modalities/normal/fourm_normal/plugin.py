"""Surface normals (ml-4m ``tok_normal@224``, 8192 codes) as discrete tokens.

Labelers, tried in this order: the synthetic world's exact renderer normals (``source``), then, for photos, normals
derived from a depth teacher. 4M-21 pseudo-labels normals with Omnidata DPT-Hybrid's normal head, whose weights no
maintained package loads, and no maintained normal estimator is in transformers; so the teacher here is the depth
plugin's, Depth Anything V2 metric (transformers), and the normals are computed from its predicted depth (finite
differences of the back-projected depth under a documented pinhole camera: :mod:`fourm_normal.teachers`). Provenance
says "derived from depth (model id)". ``depth_anything_indoor`` is the default, ``depth_anything_outdoor`` the
alternative (``--labeler normal=depth_anything_outdoor``), matching the depth plugin's labeler names.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The depth teachers the normals are derived from (the same checkpoints the depth plugin runs).
INDOOR_TEACHER = fp.HubModel(
    model_id="depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
    library="transformers",
    files=("config.json", "model.safetensors"),
    note="normals derived from this depth teacher; the paper's Omnidata normal head has no maintained loader",
)
OUTDOOR_TEACHER = fp.HubModel(
    model_id="depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf",
    library="transformers",
    files=("config.json", "model.safetensors"),
    note="normals derived from this depth teacher; the paper's Omnidata normal head has no maintained loader",
)
#: Depth Anything V2's input side (518 = 37 patches of 14 px); normals are computed at this size, then resized.
TEACHER_RESOLUTION = 518
#: The assumed camera: a pinhole with this full horizontal field of view (the synthetic world draws 50..72 degrees).
FOV_DEGREES = 60.0


def _teacher(name: str, model: fp.HubModel, domain: str) -> fp.LabelerEntry:
    return fp.teacher_labeler(
        "fourm_normal.teachers:build",
        model,
        name=name,
        options={"resolution": TEACHER_RESOLUTION, "fov_degrees": FOV_DEGREES},
        description=(
            f"Normals derived from depth ({model.model_id}, Depth Anything V2 metric {domain}, transformers) at "
            f"{TEACHER_RESOLUTION} px: finite differences of the back-projected depth, pinhole camera with a "
            f"{FOV_DEGREES:g} degree horizontal field of view; the paper's Omnidata normal teacher has no maintained "
            "loader."
        ),
    )


NORMAL = fp.image_token_modality(
    "normal",
    "tok_normal",
    fp.TokenizerConfig(
        family="divae",
        loss="mse",
        transform="unit_vectors",
        notes="unit normals in the camera frame, mapped to [-1, 1]",
    ),
    vocab=(8192, 512),
    arrays=(
        fp.pixel_array("normal", "float32", "unit normals, camera frame (x right, y down, z forward)", channels=3),
    ),
    labelers=(
        fp.source_labeler(
            {"normal": "normal"}, description="Exact camera-frame normals from the synthetic world's renderer."
        ),
        _teacher("depth_anything_indoor", INDOOR_TEACHER, "indoor"),
        _teacher("depth_anything_outdoor", OUTDOOR_TEACHER, "outdoor"),
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_normal_8k_224-448",
        normalisation="normal_half",
        grid=14,
        resolution="224-448",
        notes="DiVAE; normals as [0, 1] colours normalised with mean = std = 0.5, i.e. in [-1, 1]",
    ),
    description="Surface normals in the camera frame.",
)

fourm_register_modalities = fp.declare(NORMAL)
