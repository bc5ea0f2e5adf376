"""ImageBind feature maps (ml-4m ``tok_imagebind@224``, 8192 codes, patch 14) as discrete tokens.

ImageBind's image tower is the frozen OpenCLIP ViT-H/14 (LAION-2B); timm publishes it as the hub repo
``timm/vit_huge_patch14_clip_224.laion2b`` (safetensors; ImageBind's own checkpoint is a pickle no maintained package
loads). The labeler stores what ml-4m's ImageBind tokenizers were trained on: the tokens after the final norm,
1280-d, before the 1024-d joint projection, the patch tokens as the map and the CLS token as ``cls`` (which
``imagebind_global`` copies), from an ImageNet-normalised image (``fourm_imagebind.teachers``). There is no
ground-truth labeler: the synthetic world runs the same teacher (random-init only with ``--allow-random-teachers``,
and then said so in the part's provenance).
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

#: ImageNet mean / std: ml-4m's ImageBind tokenizers were trained with ImageNet-normalised teacher input
#: (``imagenet_default_mean_and_std: True``), not ImageBind's CLIP normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What the modality stores: 14 px patches (16x16 at 224 px), 1280-wide normed patch tokens and the normed CLS.
TEACHER = fp.TeacherConfig(
    model="vit_huge_patch14_clip_224.laion2b",
    patch_size=14,
    feature_dim=1280,
    input_modality="rgb",
    input_array="rgb",
    pooled_array="cls",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

LABELER_DESCRIPTION = (
    f"ImageBind-H/14 image tower, OpenCLIP ViT-H/14 LAION-2B ({TEACHER_MODEL.model_id}, timm): patch tokens and CLS"
    " after the final norm (1280, before the projection), ImageNet-normalised input at grid*14 px, as ml-4m's."
)

TEACHER_LABELER = fp.teacher_labeler(
    "fourm_imagebind.teachers:build",
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
    labeler_description=LABELER_DESCRIPTION,
).model_copy(update={"labelers": (TEACHER_LABELER,)})  # the hub teacher replaces the builder's timm labeler


fourm_register_modalities = fp.declare(IMAGEBIND)
