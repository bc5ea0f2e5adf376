"""DINOv2 feature maps (ml-4m ``tok_dinov2@224``, 8192 codes, patch 14) as discrete tokens.

The labeler runs the paper's teacher, DINOv2 ViT-B/14 (LVD-142M), which timm loads from the hub repo
``timm/vit_base_patch14_dinov2.lvd142m`` (safetensors), the way ml-4m made its DINOv2 pseudo-labels
(``model(x, is_training=True)``): ``x_norm_patchtokens``, the patch tokens after the final LayerNorm, as the map and
``x_norm_clstoken`` as ``cls`` (which ``dinov2_global`` copies), from the image at grid*14 px normalised with the
ImageNet mean / std (``imagenet_default_mean_and_std: True``). The checkpoint's 37 x 37 position embedding (518 px)
is resampled by timm to the run's grid when the model is built. The core's timm feature teacher runs it
(``fp.FeatureTeacherSpec``). There is no ground-truth labeler: the synthetic world runs the same teacher
(random-init only with ``--allow-random-teachers``, and then said so in the part's provenance).
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The paper's teacher, DINOv2 ViT-B/14 (LVD-142M), as timm publishes it.
TEACHER_MODEL = fp.HubModel(
    model_id="timm/vit_base_patch14_dinov2.lvd142m",
    library="timm",
    files=("config.json", "model.safetensors"),
    note="the paper's teacher: DINOv2 ViT-B/14 (LVD-142M) through timm",
)

#: What runs and what is stored: 14 px patches (16x16 at 224 px), 768-wide normed patch tokens and the normed CLS.
TEACHER = fp.FeatureTeacherSpec(
    model=TEACHER_MODEL,
    architecture="vit_base_patch14_dinov2",
    patch_size=14,
    feature_dim=768,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    normalisation="imagenet",
    layer="x_norm_patchtokens / x_norm_clstoken: tokens after the final LayerNorm (ml-4m)",
    # the random-init stand-in: the same class and width, one block with a narrow MLP; LayerScale starts at 1 (the
    # real init, 1e-5, would leave the CLS token blind to the image in a one-block model)
    random_config={
        "embed_dim": 768,
        "depth": 1,
        "num_heads": 12,
        "mlp_ratio": 0.25,
        "num_classes": 0,
        "init_values": 1.0,
    },
)

DINOV2 = fp.feature_map_modality(
    "dinov2",
    "tok_dinov2",
    TEACHER,
    notes="VQ-VAE on DINOv2-B/14 patch features (16x16x768 at 224 px)",
    pooled_description="DINOv2-B/14 CLS embedding after the final norm (what dinov2_global tokenizes)",
    description="DINOv2-B/14 patch feature maps (16x16 tokens at 224 px).",
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_DINOv2-B14_8k_224-448",
        normalisation="features",
        teacher_input="imagenet",
        grid=16,
        resolution="224-448",
        notes="ViT VQ-VAE on DINOv2-B/14 x_norm_patchtokens (768); the teacher sees ImageNet-normalised RGB",
    ),
    labeler_description=(
        f"DINOv2 ViT-B/14 ({TEACHER_MODEL.model_id}, timm): x_norm_patchtokens and x_norm_clstoken (768),"
        " ImageNet-normalised input at grid*14 px, as ml-4m's pseudo-labels."
    ),
)


fourm_register_modalities = fp.declare(DINOV2)
