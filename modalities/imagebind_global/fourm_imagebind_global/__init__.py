"""fourm modality plugin ``imagebind_global``: ImageBind global (CLS) embedding as a handful of discrete tokens."""

__version__ = "0.1.0"
