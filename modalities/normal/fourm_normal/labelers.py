"""Labelers of the normal modality (imported lazily, only when labeling runs)."""

from __future__ import annotations

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy, as_float32
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """Exact camera-frame normals from the synthetic world's renderer."""
    return SourceCopy({"normal": "normal"}, convert={"normal": as_float32})
