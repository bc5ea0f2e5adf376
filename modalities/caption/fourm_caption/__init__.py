"""fourm modality plugin ``caption``: Image captions in the shared WordPiece vocabulary."""

__version__ = "0.1.0"
