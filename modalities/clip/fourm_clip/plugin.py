"""CLIP feature maps (ml-4m ``tok_clip@224``, 8192 codes) as discrete tokens.

The labeler runs the paper's teacher, OpenAI CLIP ViT-B/16, whose image tower timm loads from the hub repo
``timm/vit_base_patch16_clip_224.openai`` (safetensors), the way ml-4m made its CLIP pseudo-labels
(``visual(x, return_final_tokens_no_cls=True)`` in ``save_vq_tokens.py``): every patch token after ``ln_post``
(timm's final ``norm``) times CLIP's projection (768 -> 512, timm's ``head``), the CLS token dropped, from the image
at grid*16 px normalised with the ImageNet mean / std, as ml-4m's tokenizer configs say
(``imagenet_default_mean_and_std: True``; not CLIP's own). OpenAI CLIP uses QuickGELU, which the hub config does not
name, so the teacher adds it. The core's timm feature teacher runs it (``fp.FeatureTeacherSpec``). There is no
ground-truth labeler: the synthetic world has no CLIP features, so it runs the same teacher (random-init only with
``--allow-random-teachers``, and then said so in the part's provenance).
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The paper's teacher, OpenAI CLIP ViT-B/16, as timm publishes its image tower.
TEACHER_MODEL = fp.HubModel(
    model_id="timm/vit_base_patch16_clip_224.openai",
    library="timm",
    files=("config.json", "model.safetensors"),
    note="the paper's teacher: OpenAI CLIP ViT-B/16 image tower (timm, QuickGELU)",
)

#: What runs and what is stored: 16 px patches (14x14 at 224 px), 512-wide projected features.
TEACHER = fp.FeatureTeacherSpec(
    model=TEACHER_MODEL,
    architecture="vit_base_patch16_clip_224",
    patch_size=16,
    feature_dim=512,
    project=True,
    act_layer="quick_gelu",
    input_modality="rgb",
    input_array="rgb",
    normalisation="imagenet",
    layer="final LayerNorm (ln_post) patch tokens @ CLIP projection, CLS dropped (ml-4m)",
    # the random-init stand-in: the same class, narrow and shallow, with the real 512-wide projection
    random_config={"embed_dim": 64, "depth": 2, "num_heads": 2, "num_classes": 512},
)

CLIP = fp.feature_map_modality(
    "clip",
    "tok_clip",
    TEACHER,
    notes="VQ-VAE on CLIP-B/16 patch features (14x14x512 at 224 px)",
    description="CLIP-B/16 patch feature maps.",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_CLIP-B16_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=14,
        resolution="224-448",
        notes="ViT VQ-VAE on CLIP-B/16 final patch tokens projected to 512; the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        f"OpenAI CLIP ViT-B/16 ({TEACHER_MODEL.model_id}, timm, QuickGELU): patch tokens after ln_post @ CLIP's"
        " projection (512), ImageNet-normalised input at grid*16 px, as ml-4m's pseudo-labels."
    ),
)


fourm_register_modalities = fp.declare(CLIP)
