"""fourm modality plugin ``color_palette``: Colour palettes of 1 to 7 colours."""

__version__ = "0.1.0"
