"""ImageBind-H/14 global embedding (ml-4m ``tok_imagebind_global``): the 1280-d CLS vector as 16 tokens (8192 codes).

4M-21's second retrieval key next to ``dinov2_global``, closer to text. The labeler copies the CLS vector the
imagebind teacher stored (ImageBind-H/14's image tower, OpenCLIP ViT-H/14 LAION-2B, after the final norm, before
the projection: what ml-4m's ``ImageBind-H14-global`` tokenizer takes), so imagebind is labelled first; it requires
the same hub weights, so a run without them skips both modalities with the model id and the ``hf download`` line.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The teacher that computes the vector in the ``imagebind`` plugin (the same hub id; plugins share no code).
TEACHER_MODEL = fp.HubModel(
    model_id="timm/vit_huge_patch14_clip_224.laion2b",
    library="timm",
    files=("config.json", "model.safetensors"),
    note="ImageBind-H/14's image tower (OpenCLIP ViT-H/14 LAION-2B); the vector is computed by the imagebind labeler",
)

IMAGEBIND_GLOBAL = fp.global_embedding_modality(
    "imagebind_global",
    "tok_imagebind_global",
    teacher="imagebind",
    model=TEACHER_MODEL,
    width=1280,
    depends_on=("rgb",),
    labeler_description=(
        f"The ImageBind-H/14 CLS embedding (1280, after the final norm; {TEACHER_MODEL.model_id}) the imagebind"
        " teacher stored (its 'cls' array), copied."
    ),
    embedding_description="ImageBind-H/14 CLS embedding (after the final norm, before the projection)",
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
