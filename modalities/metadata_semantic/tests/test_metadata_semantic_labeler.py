"""Semantic metadata computed from other modalities."""

from __future__ import annotations

import numpy as np

from fourm_core.plugin import SampleView
from fourm_metadata_semantic.labelers import SemanticMetadata, caption_lengths


def test_caption_lengths() -> None:
    assert caption_lengths("Two dogs. A cat!") == {
        "caption_n_chars": 16,
        "caption_n_words": 4,
        "caption_n_sentences": 2,
    }


def test_counts_and_class_shares_from_present_modalities_only() -> None:
    semseg = np.zeros((4, 4), np.int16)
    semseg[:2] = 101  # road (walkable, countable in the paper's lists)
    semseg[2, :2] = 1  # person
    labels = {
        "det": {"boxes": [{"label": "person"}, {"label": "person"}, {"label": "cup"}]},
        "semseg": {"semseg": semseg},
        "human_poses": None,
    }
    sets = {"walkable": (101,), "countable": (101, 88)}
    values = SemanticMetadata(sets).label(SampleView(0, {}, labels))["values"]
    assert values == {
        "n_coco_instances": 3,
        "coco_instance_diversity": 2,
        "semantic_diversity": 2,
        "walkability": 0.5,
        "objectness": 0.5,
    }


def test_boxes_below_the_det_threshold_are_not_counted() -> None:
    """A detector's stored boxes carry scores; the counts see what the det string keeps (score >= 0.6)."""
    boxes = [
        {"label": "car", "score": 0.9},
        {"label": "car", "score": 0.6},
        {"label": "dog", "score": 0.59},
        {"label": "person"},  # ground truth without a score counts (score 1)
    ]
    labeler = SemanticMetadata({})
    values = labeler.label(SampleView(0, {"boxes": [{"label": "cat"}] * 9}, {"det": {"boxes": boxes}}))["values"]
    assert values == {"n_coco_instances": 3, "coco_instance_diversity": 2}  # the source's boxes are never read
    assert labeler.provenance()["det_threshold"] == 0.6
    assert SemanticMetadata({}, det_threshold=0.95).label(SampleView(0, {}, {"det": {"boxes": boxes}}))["values"] == {
        "n_coco_instances": 1,
        "coco_instance_diversity": 1,
    }
