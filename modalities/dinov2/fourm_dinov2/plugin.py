"""DINOv2 feature maps (ml-4m ``tok_dinov2@224``, 8192 codes, patch 14) as discrete tokens.

The labeler runs the paper's teacher, DINOv2 ViT-B/14, which timm loads from the hub repo
``timm/vit_base_patch14_dinov2.lvd142m`` (safetensors), the way ml-4m made its DINOv2 pseudo-labels:
``x_norm_patchtokens`` as the map and ``x_norm_clstoken`` as ``cls`` (which ``dinov2_global`` copies), from an
ImageNet-normalised image (``fourm_dinov2.teachers``). There is no ground-truth labeler: the synthetic world has no
DINOv2 features, so it runs the same teacher (random-init only with ``--allow-random-teachers``, and then said so in
the part's provenance).
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

#: ImageNet mean / std: what DINOv2 expects and what ml-4m's DINOv2 tokenizers were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What the modality stores: 14 px patches (16x16 at 224 px), 768-wide normed patch tokens and the normed CLS.
TEACHER = fp.TeacherConfig(
    model="vit_base_patch14_dinov2.lvd142m",
    patch_size=14,
    feature_dim=768,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

LABELER_DESCRIPTION = (
    f"DINOv2 ViT-B/14 ({TEACHER_MODEL.model_id}, timm): x_norm_patchtokens and x_norm_clstoken (768),"
    " ImageNet-normalised input at grid*14 px, as ml-4m's pseudo-labels."
)

TEACHER_LABELER = fp.teacher_labeler(
    "fourm_dinov2.teachers:build",
    TEACHER_MODEL,
    name="teacher",
    default=True,
    requires=(f"modality:{TEACHER.input_modality}",),
    options={
        "patch_size": TEACHER.patch_size,
        "width": TEACHER.feature_dim,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "batch_size": TEACHER.batch_size,
        "input_modality": TEACHER.input_modality,
        "input_array": TEACHER.input_array,
        "patch_array": TEACHER.patch_array,
        "pooled_array": TEACHER.pooled_array,
    },
    description=LABELER_DESCRIPTION,
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
    labeler_description=LABELER_DESCRIPTION,
).model_copy(update={"labelers": (TEACHER_LABELER,)})  # the hub teacher replaces the builder's timm labeler


fourm_register_modalities = fp.declare(DINOV2)
