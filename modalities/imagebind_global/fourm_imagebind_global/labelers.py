"""Labelers of the imagebind_global modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import CopyArray
from fourm_core.spec import ModalitySpec


def from_teacher_labeler(spec: ModalitySpec, context: LabelContext) -> CopyArray:
    """The ImageBind-H/14 CLS embedding the imagebind teacher stored (its weights are in that part's provenance)."""
    width = spec.tokenizer.input_channels if spec.tokenizer and spec.tokenizer.input_channels else None
    if width is None:
        raise ValueError(f"modality {spec.name!r}: the tokenizer config must give input_channels (the CLS width)")
    return CopyArray("imagebind", "cls", "embedding", width)
