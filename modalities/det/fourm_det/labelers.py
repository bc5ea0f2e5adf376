"""Labelers of the det modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """Exact boxes of every visible thing from the synthetic world."""
    return SourceCopy({"boxes": "boxes"})
