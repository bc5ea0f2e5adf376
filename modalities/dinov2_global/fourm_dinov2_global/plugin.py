"""DINOv2-B/14 global embedding (ml-4m ``tok_dinov2_global``): the CLS vector as 16 discrete tokens (8192 codes).

Predicting these tokens from any input and decoding them back to a vector is how 4M-21 does any-to-any retrieval.
The labeler copies the CLS embedding the dinov2 teacher stored (``x_norm_clstoken`` of DINOv2 ViT-B/14, what ml-4m's
``DINOv2-B14-global`` tokenizer takes), so dinov2 is labelled first; it requires the same hub weights, so a run
without them skips both modalities with the model id and the ``hf download`` line.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The teacher that computes the vector in the ``dinov2`` plugin (the same hub id; plugins share no code).
TEACHER_MODEL = fp.HubModel(
    model_id="timm/vit_base_patch14_dinov2.lvd142m",
    library="timm",
    files=("config.json", "model.safetensors"),
    note="the paper's teacher: DINOv2 ViT-B/14 (LVD-142M); the vector is computed by the dinov2 labeler",
)

DINOV2_GLOBAL = fp.global_embedding_modality(
    "dinov2_global",
    "tok_dinov2_global",
    teacher="dinov2",
    model=TEACHER_MODEL,
    width=768,
    depends_on=("rgb",),
    labeler_description=(
        f"The DINOv2 ViT-B/14 CLS embedding (x_norm_clstoken, {TEACHER_MODEL.model_id}) the dinov2 teacher stored"
        " (its 'cls' array), copied."
    ),
    embedding_description="DINOv2-B/14 CLS embedding (x_norm_clstoken)",
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
