"""The global embedding's labeler: the CLS vector the ``imagebind`` teacher stored, copied (no second forward pass).

The copy says which teacher made the vector (its hub id) in the part's provenance; whether that run had real or
random-init weights is in the ``imagebind/raw`` part's provenance, where the vector was computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fourm_core import plugin as fp

__all__ = ["TeacherEmbedding", "copy_cls"]


class TeacherEmbedding(fp.CopyArray):
    """A copy of a teacher's stored CLS vector that names the teacher."""

    def __init__(self, modality: str, array: str, target: str, width: int, model_id: str) -> None:
        super().__init__(modality, array, target, width)
        self.model_id = model_id

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "teacher": self.model_id,
            "weights": f"as in {self.modality}/raw (this part copies its {self.array!r} array)",
        }


def copy_cls(
    spec: fp.ModalitySpec, context: fp.LabelContext, model: Mapping[str, Any], modality: str, array: str, target: str
) -> TeacherEmbedding:
    """The labeler factory: a copy of ``modality.array`` into ``target``, as wide as the spec's tokenizer input."""
    width = spec.tokenizer.input_channels if spec.tokenizer else None
    if not width:
        raise ValueError(f"modality {spec.name!r}: the tokenizer config must give input_channels (the vector width)")
    return TeacherEmbedding(modality, array, target, int(width), str(model["model_id"]))
