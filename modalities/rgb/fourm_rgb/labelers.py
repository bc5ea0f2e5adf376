"""Labelers of the rgb modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """RGB as the source gives it (synthetic render or ingested photo)."""
    return SourceCopy({"rgb": "rgb"})
