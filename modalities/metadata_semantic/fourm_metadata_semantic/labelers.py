"""Semantic metadata from the other modalities' labels, as the 4M-21 paper defines it.

Each field is computed only when the modality it comes from is labelled for the sample (these are soft ``uses``
dependencies): a photo store without human poses simply has no crowdedness field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView

_SENTENCE_END = re.compile(r"[.!?]+")


def caption_lengths(text: str) -> dict[str, int]:
    """Characters, words and sentences (runs of text ended by . ! ? or the end) of a caption."""
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    return {"caption_n_chars": len(text), "caption_n_words": len(text.split()), "caption_n_sentences": len(sentences)}


def class_map_statistics(classes: np.ndarray, class_sets: Mapping[str, tuple[int, ...]]) -> dict[str, float]:
    """Walkability and objectness (share of pixels in the declared class sets) and semantic diversity."""
    total = classes.size
    out: dict[str, float] = {"semantic_diversity": int(len(np.unique(classes[classes > 0])))}
    for field, set_name in (("walkability", "walkable"), ("objectness", "countable")):
        if set_name in class_sets:
            out[field] = float(np.isin(classes, np.asarray(class_sets[set_name])).sum() / total)
    return out


class SemanticMetadata:
    """Counts and shares from caption, det, human_poses, sam_instance and semseg (whichever are present)."""

    version = "1"

    def __init__(self, class_sets: Mapping[str, tuple[int, ...]]) -> None:
        self.class_sets = dict(class_sets)

    def label(self, sample: SampleView) -> dict[str, Any]:
        values: dict[str, float] = {}
        if (caption := sample.maybe("caption")) is not None:
            values.update(caption_lengths(caption["text"]))
        if (humans := sample.maybe("human_poses")) is not None:
            values["n_humans"] = len(humans["humans"])
        if (instances := sample.maybe("sam_instance")) is not None:
            values["n_sam_instances"] = int(len(instances["boxes"]))
        if (det := sample.maybe("det")) is not None:
            boxes = det["boxes"]
            values["n_coco_instances"] = len(boxes)
            values["coco_instance_diversity"] = len({b["label"] for b in boxes})
        if (semseg := sample.maybe("semseg")) is not None:
            values.update(class_map_statistics(np.asarray(semseg["semseg"]), self.class_sets))
        return {"values": values}

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {
            "method": "counts from det/human_poses/sam_instance/caption, shares of declared class sets",
            "class_sets": sorted(self.class_sets),
        }


def semantic_metadata_labeler(spec: ModalitySpec, context: LabelContext) -> SemanticMetadata:
    """Semantic metadata, with walkable/countable class sets taken from the semseg plugin's declaration."""
    semseg = context.modalities.get("semseg")
    return SemanticMetadata(semseg.class_sets if semseg is not None else {})
