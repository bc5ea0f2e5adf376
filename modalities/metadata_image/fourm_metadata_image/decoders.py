"""Pictures of metadata values: a ``name: value`` table.

The metadata key is a group: its serializer parses one sequence into ``{member: {field: value}}`` and generation
hands that whole dict to whichever member stands for the key. Every member's decoder therefore draws the whole
table (a title per member, then its fields); a flat ``{field: value}`` record (one member's own value) works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fourm_core.generation.rendering import RenderContext, record_rows, table_picture


class MetadataDecoder:
    """Every field present, as ``name: value`` lines (bin centres, 4 significant digits) on white."""

    def render(self, value: Mapping[str, Any], context: RenderContext) -> np.ndarray:
        return table_picture(record_rows(value), context.size)
