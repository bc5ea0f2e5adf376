"""SAM edges (ml-4m ``tok_sam_edge@224``, 8192 codes): edges of the instance map, with the shared edge tokenizer."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

SAM_EDGE = fp.image_token_modality(
    "sam_edge",
    "tok_sam_edge",
    fp.TokenizerConfig(
        family="divae",
        loss="smooth_l1",
        shared_as="edge",
        transform="edges",
        notes="one edge tokenizer shared with canny_edge, as in the paper",
    ),
    vocab=(8192, 512),
    depends_on=("sam_instance",),
    arrays=(fp.pixel_array("edges", "uint8", "binary edge map of the instance map, 0/255"),),
    labelers=(
        fp.labeler(
            "instance_edges",
            "fourm_sam_edge.labelers:edges_labeler",
            requires=("modality:sam_instance",),
            description=(
                "Boundaries of the stored sam_instance map (SAM's on photos, exact on the synthetic world): every "
                "change of instance id, the edges Canny finds on that map, without thresholds."
            ),
        ),
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_edge_8k_224-512",
        normalisation="minus_one_one",
        grid=14,
        resolution="224-512",
        notes="one edge DiVAE shared with canny_edge; edge maps read as RGB in [-1, 1]",
    ),
    description="Edges of the SAM-style instance map.",
)

fourm_register_modalities = fp.declare(SAM_EDGE)
