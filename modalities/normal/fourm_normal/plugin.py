"""Surface normals (ml-4m ``tok_normal@224``, 8192 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

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
