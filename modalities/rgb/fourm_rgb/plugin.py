"""RGB pixels: the model's main input, cut into patches and projected linearly (ml-4m ``rgb@224``).

Never a target (4M predicts RGB through ``tok_rgb``); other modalities are computed from it.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

RGB = fp.ModalityDeclaration(
    spec=fp.ModalitySpec(
        name="rgb",
        key="rgb",
        key_has_resolution=True,
        kind="pixels",
        input_only=True,
        presets=fp.grid_presets(None, None),
        storage=(fp.pixel_array("rgb", "uint8", "sRGB, 0..255", channels=3),),
        official=fp.OfficialAssets(
            normalisation="imagenet",
            grid=14,
            resolution=224,
            notes="the model's rgb@224 input: ImageNet mean/std, 16 px patches (no tokenizer)",
        ),
        description="RGB pixels, ImageNet-normalised and patch-projected (channel innermost, as ml-4m).",
    ),
    labelers=(
        fp.source_labeler(
            {"rgb": "rgb"}, description="RGB as the source gives it (synthetic render or ingested photo)."
        ),
    ),
)


fourm_register_modalities = fp.declare(RGB)
