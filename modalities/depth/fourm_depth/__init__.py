"""fourm modality plugin ``depth``: Metric depth maps as discrete tokens."""

__version__ = "0.1.0"
