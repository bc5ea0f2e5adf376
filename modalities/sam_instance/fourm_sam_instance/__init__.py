"""fourm modality plugin ``sam_instance``: SAM-style instances queried by points, with 16 mask tokens per instance."""

__version__ = "0.1.0"
