"""Labelers of the dinov2_global modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fourm_core.labeling.api import LabelContext, LabelError
from fourm_core.labeling.common import FromModality
from fourm_core.spec import ModalitySpec

#: The modality whose teacher stores the CLS embedding, and that array.
TEACHER_MODALITY = "dinov2"
TEACHER_ARRAY = "cls"


class TeacherCopy(FromModality):
    """Copies the DINOv2-B/14 CLS embedding the dinov2 teacher stored (C-wide float32)."""

    def __init__(self, width: int) -> None:
        super().__init__(TEACHER_MODALITY, self._copy, f"copy of the {TEACHER_MODALITY} teacher's CLS embedding")
        self.width = width

    def _copy(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        value = arrays.get(TEACHER_ARRAY)
        if value is None:
            raise LabelError(f"{TEACHER_MODALITY!r} has no {TEACHER_ARRAY!r} array for this sample")
        embedding = np.asarray(value, dtype=np.float32)
        if embedding.shape != (self.width,):
            raise LabelError(
                f"{TEACHER_MODALITY}.{TEACHER_ARRAY} has shape {embedding.shape}, expected ({self.width},)"
            )
        return {"embedding": embedding.copy()}

    def dims(self) -> dict[str, int]:
        return {"C": self.width}

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "array": TEACHER_ARRAY, "feature_dim": self.width}


def from_teacher_labeler(spec: ModalitySpec, context: LabelContext) -> TeacherCopy:
    """The CLS embedding of the dinov2 teacher (its weights are in that part's provenance)."""
    width = spec.tokenizer.input_channels if spec.tokenizer and spec.tokenizer.input_channels else None
    if width is None:
        raise ValueError(f"modality {spec.name!r}: the tokenizer config must give input_channels (the CLS width)")
    return TeacherCopy(width)
