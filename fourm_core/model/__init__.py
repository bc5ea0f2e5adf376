"""The 4M encoder-decoder (state-dict compatible with apple/ml-4m ``FourM``) and its configuration."""

from fourm_core.model.config import RECIPES, SIZES, FourMConfig, fourm_config, read_config
from fourm_core.model.network import FourMNetwork, parse_official_model_name
from fourm_core.model.official import load_official, official_config, read_official, read_official_config

__all__ = [
    "RECIPES",
    "SIZES",
    "FourMConfig",
    "FourMNetwork",
    "fourm_config",
    "load_official",
    "official_config",
    "parse_official_model_name",
    "read_config",
    "read_official",
    "read_official_config",
]
