"""fourm modality plugin ``sam_edge``: Edges of the instance map as discrete tokens (shared edge tokenizer)."""

__version__ = "0.1.0"
