"""fourm modality plugin ``normal``: Surface normals (camera frame) as discrete tokens."""

__version__ = "0.1.0"
