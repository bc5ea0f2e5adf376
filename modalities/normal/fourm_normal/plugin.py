"""Surface normals (ml-4m ``tok_normal@224``, 8192 codes) as discrete tokens."""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, TokenizerConfig, grid_presets

SPEC = ModalitySpec(
    name="normal",
    key="tok_normal",
    key_has_resolution=True,
    kind="image_tokens",
    embedding="2d",
    vocabulary="own",
    masking="token",
    presets=grid_presets(8192, 512),
    depends_on=(),
    tokenizer=TokenizerConfig(
        family="divae",
        loss="mse",
        input_channels=3,
        transform="unit_vectors",
        notes="unit normals in the camera frame, mapped to [-1, 1]",
    ),
    storage=(
        ArraySpec(
            name="normal",
            dtype="float32",
            shape=("H", "W", 3),
            description="unit normals, camera frame (x right, y down, z forward)",
        ),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="Surface normals in the camera frame.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the normal modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="normal",
            name="source",
            factory="fourm_normal.labelers:source_labeler",
            default=True,
            requires=("source:normal",),
            description="Exact camera-frame normals from the synthetic world's renderer.",
        )
    )
