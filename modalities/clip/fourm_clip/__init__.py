"""fourm modality plugin ``clip``: CLIP-B/16 patch feature maps as discrete tokens."""

__version__ = "0.1.0"
