"""fourm modality plugin ``canny_edge``: Canny edges of the RGB image as discrete tokens (shared edge tokenizer)."""

__version__ = "0.1.0"
