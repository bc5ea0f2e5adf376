"""Albedo labelers: the synthetic world renders reflectance exactly; photos have no offline albedo labeler."""

from __future__ import annotations

import numpy as np

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import SourceCopy
from fourm_core.spec import ModalitySpec


def source_labeler(spec: ModalitySpec, context: LabelContext) -> SourceCopy:
    """Exact linear reflectance from the source."""
    return SourceCopy({"albedo": "albedo"}, convert={"albedo": lambda v: np.asarray(v, dtype=np.float16)})
