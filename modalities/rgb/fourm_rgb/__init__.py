"""fourm modality plugin ``rgb``: RGB pixels as patch-projected model input (4M's rgb@R)."""

__version__ = "0.1.0"
