"""ImageBind feature maps (ml-4m ``tok_imagebind@224``, 8192 codes, patch 14) as discrete tokens.

ImageBind's image tower is the frozen OpenCLIP ViT-H/14 (LAION-2B); timm publishes it as the hub repo
``timm/vit_huge_patch14_clip_224.laion2b`` (safetensors; ImageBind's own checkpoint is a pickle no maintained package
loads). The labeler stores what ml-4m's ImageBind tokenizers were trained on (``run_training_vqvae.py``:
``tokens[:, 1:]`` for the map, ``tokens[:, 0]`` for ``ImageBind-H14-global``): the tokens after the final norm,
1280-d, before the 1024-d joint projection, the patch tokens as the map and the CLS token as ``cls`` (which
``imagebind_global`` copies), from the image at grid*14 px normalised with the ImageNet mean / std
(``imagenet_default_mean_and_std: True``; not ImageBind's CLIP normalisation). The core's timm feature teacher runs it
(``fp.FeatureTeacherSpec``). There is no ground-truth labeler: the synthetic world runs the same teacher
(random-init only with ``--allow-random-teachers``, and then said so in the part's provenance).
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: ImageBind-H/14's image tower: OpenCLIP ViT-H/14 LAION-2B, as timm publishes it.
TEACHER_MODEL = fp.HubModel(
    model_id="timm/vit_huge_patch14_clip_224.laion2b",
    library="timm",
    files=("config.json", "model.safetensors"),
    note="ImageBind-H/14's frozen image tower, OpenCLIP ViT-H/14 LAION-2B, through timm",
)

#: What runs and what is stored: 14 px patches (16x16 at 224 px), 1280-wide normed patch tokens and the normed CLS.
TEACHER = fp.FeatureTeacherSpec(
    model=TEACHER_MODEL,
    architecture="vit_huge_patch14_clip_224",
    patch_size=14,
    feature_dim=1280,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    normalisation="imagenet",
    layer="tokens after the final LayerNorm, before the 1024-d projection; CLS and patches (ml-4m)",
    # the random-init stand-in: the same class and the stored width (1280), one block with a narrow MLP. LayerScale
    # at 10 lets the block's image-dependent output outweigh the pre-normed CLS token: without it the CLS of every
    # image is nearly the same vector (cosine 0.97 to the mean on the scikit-image photos, 0.68 with it; DINOv2's
    # stand-in: 0.59), and imagebind_global would give its tokenizer and retrieval nothing to tell apart
    random_config={
        "embed_dim": 1280,
        "depth": 1,
        "num_heads": 16,
        "mlp_ratio": 0.25,
        "num_classes": 0,
        "init_values": 10.0,
    },
)

IMAGEBIND = fp.feature_map_modality(
    "imagebind",
    "tok_imagebind",
    TEACHER,
    notes="VQ-VAE on ImageBind-H/14 patch features (16x16x1280 at 224 px)",
    pooled_description="ImageBind-H/14 CLS embedding after the final norm (what imagebind_global tokenizes)",
    description="ImageBind-H/14 patch feature maps (16x16 tokens at 224 px).",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_ImageBind-H14_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=16,
        resolution="224-448",
        notes="ViT VQ-VAE on ImageBind-H/14 patch tokens (1280); the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        f"ImageBind-H/14 image tower, OpenCLIP ViT-H/14 LAION-2B ({TEACHER_MODEL.model_id}, timm): patch tokens"
        " and CLS after the final norm (1280, before the projection), ImageNet-normalised input at grid*14 px, as"
        " ml-4m's."
    ),
)


fourm_register_modalities = fp.declare(IMAGEBIND)
