"""RGB pixels: the model's main input, cut into patches and projected linearly (ml-4m ``rgb@224``).

Never a target (4M predicts RGB through ``tok_rgb``); other modalities are computed from it.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, grid_presets

SPEC = ModalitySpec(
    name="rgb",
    key="rgb",
    key_has_resolution=True,
    kind="pixels",
    embedding="2d",
    vocabulary="none",
    masking="token",
    input_only=True,
    presets=grid_presets(None, None),
    storage=(ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3), description="sRGB, 0..255"),),
    description="RGB pixels, ImageNet-normalised and patch-projected (channel innermost, as ml-4m).",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the rgb modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """The source-truth labeler (default)."""
    register(
        LabelerSpec(
            modality="rgb",
            name="source",
            factory="fourm_rgb.labelers:source_labeler",
            default=True,
            requires=("source:rgb",),
            description="RGB as the source gives it (synthetic render or ingested photo).",
        )
    )
