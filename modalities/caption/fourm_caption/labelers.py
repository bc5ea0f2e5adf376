"""Labelers of the caption modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """The source's caption (scene-graph caption, or a photo's sidecar .txt)."""
    return SourceCopy({"text": "caption"}, allow_empty=False)
