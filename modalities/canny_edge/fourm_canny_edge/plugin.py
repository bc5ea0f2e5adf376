"""Canny edges (ml-4m ``tok_canny_edge@224``, 8192 codes) as discrete tokens, with the shared edge tokenizer."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

CANNY_EDGE = fp.image_token_modality(
    "canny_edge",
    "tok_canny_edge",
    fp.TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        shared_as="edge",
        transform="edges",
        notes="one edge tokenizer shared with sam_edge, as in the paper",
    ),
    vocab=(8192, 512),
    depends_on=("rgb",),
    arrays=(fp.pixel_array("edges", "uint8", "binary edge map, 0/255"),),
    labelers=(
        fp.labeler(
            "canny",
            "fourm_canny_edge.labelers:canny_labeler",
            requires=("modality:rgb",),
            description="Auto-threshold OpenCV Canny on the RGB image.",
        ),
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_edge_8k_224-512",
        normalisation="minus_one_one",
        grid=14,
        resolution="224-512",
        notes="one edge DiVAE shared with sam_edge; edge maps read as RGB in [-1, 1]",
    ),
    description="Canny edges of the RGB image.",
)

fourm_register_modalities = fp.declare(CANNY_EDGE)
