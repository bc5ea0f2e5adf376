"""Labelers of the depth modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy, as_float32
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """Exact metric depth from the synthetic world's renderer."""
    return SourceCopy({"depth": "depth"}, convert={"depth": as_float32})
