"""CLIP feature maps (ml-4m ``tok_clip@224``, 8192 codes) as discrete tokens.

The labeler runs the paper's teacher, OpenAI CLIP ViT-B/16, whose image tower timm loads from the hub repo
``timm/vit_base_patch16_clip_224.openai`` (safetensors), the way ml-4m made its CLIP pseudo-labels: patch tokens
after ``ln_post`` times CLIP's projection (768 -> 512), from an ImageNet-normalised image (``fourm_clip.teachers``).
There is no ground-truth labeler: the synthetic world has no CLIP features, so it runs the same teacher (random-init
only with ``--allow-random-teachers``, and then said so in the part's provenance).
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

#: ImageNet mean / std: ml-4m's CLIP tokenizer saw the teacher's features of ImageNet-normalised images
#: (``imagenet_default_mean_and_std: True`` in its config), not CLIP's own normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: What the modality stores: 16 px patches (14x14 at 224 px), 512-wide features after CLIP's projection.
TEACHER = fp.TeacherConfig(
    model="vit_base_patch16_clip_224.openai",
    patch_size=16,
    feature_dim=512,
    project=True,
    input_modality="rgb",
    input_array="rgb",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)

LABELER_DESCRIPTION = (
    f"OpenAI CLIP ViT-B/16 ({TEACHER_MODEL.model_id}, timm): patch tokens after ln_post @ CLIP's projection (512),"
    " ImageNet-normalised input at grid*16 px, as ml-4m's pseudo-labels."
)

TEACHER_LABELER = fp.teacher_labeler(
    "fourm_clip.teachers:build",
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
    },
    description=LABELER_DESCRIPTION,
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
    labeler_description=LABELER_DESCRIPTION,
).model_copy(update={"labelers": (TEACHER_LABELER,)})  # the hub teacher replaces the builder's timm labeler


fourm_register_modalities = fp.declare(CLIP)
