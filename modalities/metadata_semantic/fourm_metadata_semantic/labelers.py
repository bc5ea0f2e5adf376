"""Semantic metadata from the other modalities' labels, as the 4M-21 paper defines it.

Each field is computed only when the modality it comes from is labelled for the sample (these are soft ``uses``
dependencies): a photo store without human poses simply has no crowdedness field. Everything is read from the other
modalities' stored labels (``SampleView.maybe``), never from the data source, so the same labeler serves the
synthetic world (whose labels copy its ground truth) and photos (whose labels come from the teachers).

COCO clutter and instance diversity count the boxes the det string keeps (score >= ``det_threshold``, 0.6 as in
ml-4m): a detector's stored low-score boxes, or boxes without a score (ground truth, score 1), are counted alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView

_SENTENCE_END = re.compile(r"[.!?]+")
#: Boxes scoring below this are not objects for the counts (the det string's threshold, ml-4m's ``det_threshold``).
DET_THRESHOLD = 0.6


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

    version = "2"

    def __init__(self, class_sets: Mapping[str, tuple[int, ...]], det_threshold: float = DET_THRESHOLD) -> None:
        self.class_sets = dict(class_sets)
        self.det_threshold = float(det_threshold)

    def label(self, sample: SampleView) -> dict[str, Any]:
        values: dict[str, float] = {}
        if (caption := sample.maybe("caption")) is not None:
            values.update(caption_lengths(caption["text"]))
        if (humans := sample.maybe("human_poses")) is not None:
            values["n_humans"] = len(humans["humans"])
        if (instances := sample.maybe("sam_instance")) is not None:
            values["n_sam_instances"] = int(len(instances["boxes"]))
        if (det := sample.maybe("det")) is not None:
            boxes = [b for b in det["boxes"] if float(b.get("score", 1.0)) >= self.det_threshold]
            values["n_coco_instances"] = len(boxes)
            values["coco_instance_diversity"] = len({b["label"] for b in boxes})
        if (semseg := sample.maybe("semseg")) is not None:
            values.update(class_map_statistics(np.asarray(semseg["semseg"]), self.class_sets))
        return {"values": values}

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {
            "method": "counts from the stored det/human_poses/sam_instance/caption/semseg labels, shares of declared "
            "class sets",
            "class_sets": sorted(self.class_sets),
            "det_threshold": self.det_threshold,
        }


def semantic_metadata_labeler(
    spec: ModalitySpec, context: LabelContext, det_threshold: float = DET_THRESHOLD
) -> SemanticMetadata:
    """Semantic metadata, with walkable/countable class sets taken from the semseg plugin's declaration."""
    semseg = context.modalities.get("semseg")
    return SemanticMetadata(semseg.class_sets if semseg is not None else {}, det_threshold)
