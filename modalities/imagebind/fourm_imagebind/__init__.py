"""fourm modality plugin ``imagebind``: ImageBind-H/14 patch feature maps as discrete tokens."""

__version__ = "0.1.0"
