"""fourm modality plugin ``dinov2_global``: DINOv2 global (CLS) embedding as a handful of discrete tokens."""

__version__ = "0.1.0"
