"""SAM-style instances (ml-4m ``sam_instance``): query points, each followed by the instances containing it as a box
and 16 mask-codebook tokens (``point v0=y v1=x polygon v0=.. v1=.. v2=.. v3=.. <16 tokens> ...`` or ``none``)."""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

KEYWORDS = ("point", "polygon", "none")

#: each instance's mask, cut out of the instance map at a fixed size, becomes a 4x4 grid of codes
MASK_TOKENIZER = fp.TokenizerConfig(
    family="mask_vqvae",
    loss="binary_cross_entropy",
    input_channels=1,
    codebook={"paper": 1024, "tiny": 256},
    tokens_per_item=16,
    transform="masks",
    items="fourm_sam_instance.tokenizing:mask_items",
    item_size={"paper": 64, "tiny": 32},
    notes="64x64 instance masks (32x32 in tiny) to a 4x4 grid of tokens",
)

#: The paper's teacher: SAM ViT-H, through transformers (safetensors weights on the hub's main branch).
SAM_VIT_H = fp.HubModel(
    model_id="facebook/sam-vit-huge",
    library="transformers",
    files=("config.json", "preprocessor_config.json", "model.safetensors"),
    note="SAM ViT-H, the 4M-21 paper's SAM-instance teacher, queried with a 32 x 32 point grid",
)

SAM_INSTANCE = fp.sequence_modality(
    "sam_instance",
    "sam_instance",
    max_tokens=(290, 128),
    uses=("rgb",),
    vocab_words=KEYWORDS,
    tokenizer=MASK_TOKENIZER,
    storage=(
        fp.pixel_array("instances", "int32", "instance id per pixel, 0 = none"),
        fp.ArraySpec(name="boxes", dtype="int32", shape=("N", 4), ragged=True, description="xmin, ymin, xmax, ymax px"),
        fp.item_tokens_array("boxes"),
    ),
    labelers=(
        fp.labeler(
            "source",
            "fourm_sam_instance.labelers:source_labeler",
            requires=("source:instances",),
            description="The source's instance map (exact for the synthetic world).",
        ),
        fp.teacher_labeler(
            "fourm_sam_instance.teachers:build",
            SAM_VIT_H,
            name="sam",
            requires=("modality:rgb", "package:torchvision"),  # the SAM image processor's box NMS
            options={"resolution": 1024, "batch_size": 4, "points_per_side": 32},
            description=(
                "SAM ViT-H (facebook/sam-vit-huge, transformers SamModel, the paper's teacher) queried with a 32 x 32 "
                "point grid: SAM's automatic masks (predicted-IoU and stability filters, box NMS), painted largest "
                "first into the instance map."
            ),
        ),
        fp.labeler(
            "felzenszwalb",
            "fourm_sam_instance.labelers:felzenszwalb_labeler",
            explicit=True,  # never picked in SAM's place by itself: photos without SAM's weights skip instead
            requires=("modality:rgb", "package:skimage"),
            description=(
                "NOT SAM: graph-based colour segments (scikit-image), a classical stand-in that runs only when "
                "named (--labeler sam_instance=felzenszwalb); its provenance says so."
            ),
        ),
    ),
    serializer="fourm_sam_instance.serializer:SamInstanceSerializer",
    decoder=fp.DecoderEntry(
        factory="fourm_sam_instance.decoders:SamInstanceDecoder",
        description="Instance masks (decoded by the mask tokenizer) in distinct colours over the input picture.",
    ),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_sam-instance_1k_64",
        normalisation="none",
        tokens_per_item=16,
        resolution=64,
        text_tokenizer=fp.OFFICIAL_TEXT_TOKENIZER,
        notes="ViT VQ-VAE on 64x64 binary instance masks in {0, 1} (4x4 = 16 tokens per instance)",
    ),
    description="Instance segments queried by points; masks are tokenized per instance.",
)

fourm_register_modalities = fp.declare(SAM_INSTANCE)
