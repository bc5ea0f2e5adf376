"""fourm modality plugin ``metadata_semantic``.

Semantic metadata (crowdedness, clutter, diversity, walkability, objectness, caption length).
"""

__version__ = "0.1.0"
