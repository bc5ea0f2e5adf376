"""Edges of the instance map: where the instance id changes between neighbouring pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView


def instance_boundaries(instances: np.ndarray) -> np.ndarray:
    """0/255 map of pixels whose right or lower neighbour belongs to another instance (background counts as one).

    This is what Canny finds on a piecewise-constant instance map, without Canny's threshold tuning: every change of
    id is an edge of full strength, so the exact test is cheaper and has no parameters.
    """
    edges = np.zeros(instances.shape, bool)
    horizontal = instances[:, 1:] != instances[:, :-1]
    vertical = instances[1:, :] != instances[:-1, :]
    edges[:, :-1] |= horizontal
    edges[:, 1:] |= horizontal
    edges[:-1, :] |= vertical
    edges[1:, :] |= vertical
    return (edges * 255).astype(np.uint8)


class InstanceEdges:
    """Boundaries of the stored sam_instance map."""

    version = "1"

    def label(self, sample: SampleView) -> dict[str, Any]:
        return {"edges": instance_boundaries(np.asarray(sample.get("sam_instance")["instances"]))}

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "instance-map boundaries (4-neighbourhood)", "input": "sam_instance instance map"}


def edges_labeler(spec: ModalitySpec, context: LabelContext) -> InstanceEdges:
    """Edges of whatever instance map the store's sam_instance part holds (SAM's, or the source's)."""
    return InstanceEdges()
