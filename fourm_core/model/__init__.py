"""The 4M encoder-decoder (state-dict compatible with apple/ml-4m ``FourM``)."""

from fourm_core.model.network import (
    RECIPES,
    SIZES,
    FourMNetwork,
    fourm_config,
    modality_info_from_registry,
    parse_official_model_name,
)

__all__ = [
    "RECIPES",
    "SIZES",
    "FourMNetwork",
    "fourm_config",
    "modality_info_from_registry",
    "parse_official_model_name",
]
