"""fourm modality plugin ``metadata_image``.

Image-processing metadata (size, brightness, contrast, saturation, entropy, colourfulness ...).
"""

__version__ = "0.1.0"
