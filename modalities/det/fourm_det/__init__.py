"""fourm modality plugin ``det``: Bounding boxes as v0..v3 coordinate tokens followed by class names."""

__version__ = "0.1.0"
