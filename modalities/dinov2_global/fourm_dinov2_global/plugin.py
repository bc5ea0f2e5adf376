"""DINOv2-B/14 global embedding (ml-4m ``tok_dinov2_global``): the CLS vector as 16 discrete tokens (8192 codes).

Predicting these tokens from any input and decoding them back to a vector is how 4M-21 does any-to-any retrieval.
The labeler copies the CLS embedding the dinov2 teacher stored (so dinov2 is labelled first).
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

DINOV2_GLOBAL = fp.global_embedding_modality(
    "dinov2_global",
    "tok_dinov2_global",
    teacher="dinov2",
    width=768,
    depends_on=("rgb",),
    embedding_description="DINOv2-B/14 CLS embedding",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_DINOv2-B14-global_8k_16_224",
        normalisation="features",
        teacher_input="imagenet",
        tokens_per_item=16,
        resolution=224,
        notes="bottleneck MLP + Memcodes (16 heads) on the DINOv2-B/14 CLS token (x_norm_clstoken)",
    ),
    description="DINOv2-B/14 global embedding as discrete tokens, for retrieval.",
)


fourm_register_modalities = fp.declare(DINOV2_GLOBAL)
