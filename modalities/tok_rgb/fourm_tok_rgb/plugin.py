"""RGB as discrete tokens (ml-4m ``tok_rgb@224``, 16384 codes at 224 px): the way 4M *predicts* images.

No labeler and no raw array: the tokens are made from the rgb modality's pixels by ``fourm data tokenize``.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

TOK_RGB = fp.image_token_modality(
    "tok_rgb",
    "tok_rgb",
    fp.TokenizerConfig(
        family="divae",
        loss="mse",
        input_channels=3,
        transform="color",
        source="rgb.rgb",
        notes="ViT VQ-VAE encoder, diffusion decoder; RGB in [-1, 1]",
    ),
    vocab=(16384, 1024),
    depends_on=("rgb",),
    official=fp.OfficialAssets(
        hub_id="EPFL-VILAB/4M_tokenizers_rgb_16k_224-448",
        normalisation="minus_one_one",
        grid=14,
        resolution="224-448",
        notes="DiVAE: ViT-B encoder, patched U-Net diffusion decoder; RGB in [-1, 1]",
    ),
    description="RGB image tokens; the tokenizer's decoder turns predictions back into pictures.",
)

fourm_register_modalities = fp.declare(TOK_RGB)
