"""Depth (ml-4m ``tok_depth@224``, 8192 codes): metric depth maps as discrete tokens.

Labelers, tried in this order: the synthetic world's exact renderer depth (``source``), then a real teacher for
photos. 4M-21 pseudo-labels depth with Omnidata DPT-Hybrid, whose weights no maintained package loads; the closest
maintained teacher storing what this plugin stores (metric depth in metres) is Depth Anything V2 fine-tuned for
metric depth, loaded by transformers (``DepthAnythingForDepthEstimation``). Two checkpoints, one per domain:
``depth_anything_indoor`` (Hypersim, up to 20 m; the default, closest to Omnidata's mostly indoor training data) and
``depth_anything_outdoor`` (Virtual KITTI, up to 80 m), picked with ``fourm data label --labeler
depth=depth_anything_outdoor``.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: Depth Anything V2 Base, metric, indoor (Hypersim, max depth 20 m): the default teacher for photos.
INDOOR_TEACHER = fp.HubModel(
    model_id="depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
    library="transformers",
    files=("config.json", "model.safetensors"),
    note="stands in for the paper's Omnidata DPT-Hybrid (no maintained loader); metric depth, indoor (<= 20 m)",
)
#: Depth Anything V2 Base, metric, outdoor (Virtual KITTI, max depth 80 m).
OUTDOOR_TEACHER = fp.HubModel(
    model_id="depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf",
    library="transformers",
    files=("config.json", "model.safetensors"),
    note="stands in for the paper's Omnidata DPT-Hybrid (no maintained loader); metric depth, outdoor (<= 80 m)",
)
#: The teacher's input side: Depth Anything V2's own (518 = 37 patches of 14 px).
TEACHER_RESOLUTION = 518


def _teacher(name: str, model: fp.HubModel, domain: str) -> fp.LabelerEntry:
    return fp.teacher_labeler(
        "fourm_depth.teachers:build",
        model,
        name=name,
        options={"resolution": TEACHER_RESOLUTION},
        description=(
            f"Depth Anything V2 metric {domain} ({model.model_id}, transformers) at {TEACHER_RESOLUTION} px, "
            "depth in metres resized to the store's size; stands in for the paper's Omnidata DPT-Hybrid."
        ),
    )


DEPTH = fp.image_token_modality(
    "depth",
    "tok_depth",
    fp.TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        transform="robust_depth",
        notes="robust standardisation (10%..90% band) before encoding",
    ),
    vocab=(8192, 512),
    arrays=(fp.pixel_array("depth", "float32", "metric depth in metres, 0 = invalid"),),
    labelers=(
        fp.source_labeler({"depth": "depth"}, description="Exact metric depth from the synthetic world's renderer."),
        _teacher("depth_anything_indoor", INDOOR_TEACHER, "indoor"),
        _teacher("depth_anything_outdoor", OUTDOOR_TEACHER, "outdoor"),
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_depth_8k_224-448",
        normalisation="robust_depth",
        grid=14,
        resolution="224-448",
        notes="DiVAE; linear depth standardised by its 10%..90% band (fourm's own tokenizer uses log depth)",
    ),
    description="Metric depth; the tokenizer sees robustly standardised depth.",
)

fourm_register_modalities = fp.declare(DEPTH)
