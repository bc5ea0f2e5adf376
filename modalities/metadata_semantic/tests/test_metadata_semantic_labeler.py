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
