"""fourm modality plugin ``metadata_geometric``: Geometric metadata (geometric complexity, occlusion score)."""

__version__ = "0.1.0"
