"""Depth (ml-4m ``tok_depth@224``, 8192 codes): metric depth maps as discrete tokens."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

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
