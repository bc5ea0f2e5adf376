"""fourm modality plugin ``dinov2``: DINOv2-B/14 patch feature maps as discrete tokens."""

__version__ = "0.1.0"
