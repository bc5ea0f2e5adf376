"""fourm modality plugin ``t5_caption``.

Caption text embeddings (T5-XXL, or an offline sentence encoder) as continuous input.
"""

__version__ = "0.1.0"
