"""T5 caption embeddings (ml-4m ``t5_caption``): per-token text embeddings projected linearly, input only.

The paper uses T5-XXL (4096-d, 77 tokens); offline, fourm uses a sentence encoder shipped on PyPI (all-MiniLM-L6-v2,
384-d) for the tiny preset and records which encoder produced the store.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, ModalitySpec, PresetLayout

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
