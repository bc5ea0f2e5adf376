"""ImageBind-H/14 global embedding (ml-4m ``tok_imagebind_global``): the 1280-d CLS vector as 16 tokens (8192 codes).

4M-21's second retrieval key next to ``dinov2_global``, closer to text: the vector is the one the imagebind teacher
stored (so imagebind is labelled first), and any input can predict its tokens.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

IMAGEBIND_GLOBAL = fp.global_embedding_modality(
    "imagebind_global",
    "tok_imagebind_global",
    teacher="imagebind",
    width=1280,
    depends_on=("rgb",),
    embedding_description="ImageBind-H/14 CLS embedding",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_ImageBind-H14-global_8k_16_224",
        normalisation="features",
        teacher_input="imagenet",
        tokens_per_item=16,
        resolution=224,
        notes="bottleneck MLP + Memcodes (16 heads) on the ImageBind-H/14 CLS token",
    ),
    description="ImageBind-H/14 global embedding as discrete tokens, for retrieval.",
)


fourm_register_modalities = fp.declare(IMAGEBIND_GLOBAL)
