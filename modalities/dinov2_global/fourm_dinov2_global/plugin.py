"""DINOv2-B/14 global embedding (ml-4m ``tok_dinov2_global``): the CLS vector as 16 discrete tokens (8192 codes).

Predicting these tokens from any input and decoding them back to a vector is how 4M-21 does any-to-any retrieval.
"""

from __future__ import annotations

from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ArraySpec, LabelerSpec, ModalitySpec, PresetLayout, TokenizerConfig

SPEC = ModalitySpec(
    name="dinov2_global",
    key="tok_dinov2_global",
    kind="global_tokens",
    embedding="learned",
    vocabulary="own",
    masking="token",
    presets={
        "paper": PresetLayout(max_tokens=16, vocab_size=8192),
        "tiny": PresetLayout(max_tokens=8, vocab_size=512),
    },
    depends_on=("rgb",),
    uses=("dinov2",),
    tokenizer=TokenizerConfig(
        family="mlp_memcodes",
        loss="cosine",
        input_channels=768,
        transform="embedding",
        notes="bottleneck MLP + Memcodes; one head per token",
    ),
    storage=(
        ArraySpec(name="embedding", dtype="float32", shape=("C",), description="DINOv2-B/14 CLS embedding"),
        ArraySpec(name="tokens", dtype="int16", shape=("K", "L"), form="tokens", description="K crops x L tokens"),
    ),
    description="DINOv2-B/14 global embedding as discrete tokens, for retrieval.",
)


@hookimpl
def fourm_register_modalities(register):
    """Register the dinov2_global modality."""
    register(SPEC)


@hookimpl
def fourm_register_labelers(register):
    """Copy of the dinov2 teacher's CLS embedding (default; needs dinov2 labelled first)."""
    register(
        LabelerSpec(
            modality="dinov2_global",
            name="from_teacher",
            factory="fourm_dinov2_global.labelers:from_teacher_labeler",
            default=True,
            requires=("modality:dinov2",),
            description="The CLS embedding the dinov2 teacher stored (its 'cls' array), copied.",
        )
    )
