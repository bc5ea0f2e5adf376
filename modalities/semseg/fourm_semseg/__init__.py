"""fourm modality plugin ``semseg``: Semantic segmentation (COCO-panoptic-like classes) as discrete tokens."""

__version__ = "0.1.0"
