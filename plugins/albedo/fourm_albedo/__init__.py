"""fourm-albedo: an out-of-tree modality plugin (surface reflectance), written against the public hook contract only."""

__version__ = "0.1.0"
