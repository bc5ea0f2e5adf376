"""Labelers of the semseg modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """Exact class map (COCO-panoptic index + 1) from the synthetic world."""
    return SourceCopy({"semseg": "semantic"})
