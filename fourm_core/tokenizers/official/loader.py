"""Load an official ml-4m tokenizer (``EPFL-VILAB/4M_tokenizers_*``) from a folder in the hub layout or a hub id.

The hub layout is ``config.json`` (the constructor keywords, flat; a ``{"config": {...}}`` wrapper, as
``PyTorchModelHubMixin`` may write, is accepted too) and ``model.safetensors``. The class is chosen as ml-4m's
``get_image_tokenizer`` decides: a diffusion decoder (``beta_schedule`` in the config, or a ``unet_*`` / ``uvit_*``
``dec_type``) means ``DiVAE``, anything else ``VQVAE``; ``encoder_only=True`` builds the ``VQ`` base and drops the
decoder's weights. The weights load strictly: a missing or unexpected key, or a shape that differs, is an
:class:`OfficialTokenizerError` naming the keys and the file.

``fourm_size_overrides`` (a fourm extension): a config may carry, per sub-module, constructor keywords that replace
the named architecture's sizes, e.g. ``{"encoder": {"dim_tokens": 32, "depth": 1, "num_heads": 2}, "decoder":
{"block_dims": [[64, 16]]}}`` (ViT keys: ``dim_tokens``, ``depth``, ``num_heads``, ``mlp_ratio``; bottleneck-MLP
key: ``block_dims``; plain MLP: ``widths``). Only the reduced CI fixtures made from ml-4m's own classes use it;
real hub configs never have it.

Classes are named in :data:`OFFICIAL_CLASSES` (``name -> "module:Class"``) and imported on first use, so a class
family (the diffusion tokenizers) plugs in with one entry.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fourm_core.errors import FileFormatError, UserError, load_safetensors, one_line, read_json
from fourm_core.model.state import state_mismatch

__all__ = [
    "CONFIG_FILE",
    "OFFICIAL_CLASSES",
    "WEIGHTS_FILE",
    "OfficialTokenizerError",
    "is_official_tokenizer_config",
    "load_official_tokenizer",
    "official_class_name",
    "official_config",
]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"

#: class name -> "module:Class"; ``official_class_name`` picks the entry for a config
OFFICIAL_CLASSES: dict[str, str] = {
    "VQ": "fourm_core.tokenizers.official.vq:VQ",
    "VQVAE": "fourm_core.tokenizers.official.vq:VQVAE",
    "DiVAE": "fourm_core.tokenizers.official.divae:DiVAE",
}

#: keys only ml-4m tokenizer configs have (fourm's own tokenizer config.json names a ``family`` instead)
_ML4M_KEYS = frozenset({"enc_type", "dec_type", "quant_type", "beta_schedule", "n_channels", "patch_proj"})
#: state-dict prefixes of the decoder side, dropped for ``encoder_only``
_DECODER_PREFIXES = ("decoder.", "post_quant_proj.")


class OfficialTokenizerError(UserError, ValueError):
    """An official tokenizer folder that cannot be loaded: a bad config, missing files, weights that do not fit."""


def official_config(data: Any) -> dict[str, Any] | None:
    """The flat constructor-keyword dict of an official config (unwrapping ``{"config": {...}}``), or None when
    ``data`` is not one (for example fourm's own ``{"config": {"family": ...}, "info": ...}``)."""
    if not isinstance(data, Mapping):
        return None
    if isinstance(data.get("config"), Mapping) and not (_ML4M_KEYS & set(data)):
        data = data["config"]
    if "family" in data or not (_ML4M_KEYS & set(data)):
        return None
    return dict(data)


def is_official_tokenizer_config(data: Any) -> bool:
    """True for an ml-4m tokenizer config (flat or wrapped); False for fourm's own tokenizer config and others."""
    return official_config(data) is not None


def official_class_name(config: Mapping[str, Any]) -> str:
    """``DiVAE`` when the config names a diffusion decoder, else ``VQVAE`` (ml-4m's ``get_image_tokenizer`` rule)."""
    if any("controlnet" in str(key) for key in config):
        raise OfficialTokenizerError("ml-4m's VQControlNet (Stable Diffusion decoder) tokenizers are not supported")
    dec_type = str(config.get("dec_type", ""))
    if "beta_schedule" in config or dec_type.startswith(("unet_", "uvit_")):
        return "DiVAE"
    return "VQVAE"


def _import_class(name: str) -> type[nn.Module]:
    target = OFFICIAL_CLASSES[name]
    module_name, _, attr = target.partition(":")
    try:
        klass: type[nn.Module] = getattr(importlib.import_module(module_name), attr)
        return klass
    except (ImportError, AttributeError) as exc:
        raise OfficialTokenizerError(f"official tokenizer class {name} ({target}) is not available: {exc}") from None


def _local_folder(path_or_repo_id: str | os.PathLike[str], revision: str | None) -> Path:
    path = Path(os.fspath(path_or_repo_id)).expanduser()
    if not path.exists():
        from fourm_core.hub import resolve  # lazily: hub access pulls in huggingface_hub

        path = resolve(path_or_repo_id, revision=revision, kind="tokenizer")
    if path.is_file():
        raise OfficialTokenizerError(f"{path}: expected a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}, not a file")
    return path


def _check_keys(model: nn.Module, state: Mapping[str, torch.Tensor], weights: Path) -> None:
    problems = state_mismatch(model.state_dict(), state)
    if problems:
        raise OfficialTokenizerError(
            f"{weights}: does not fit the {type(model).__name__} its {CONFIG_FILE} builds ({'; '.join(problems)})"
        )


def load_official_tokenizer(
    path_or_repo_id: str | os.PathLike[str],
    *,
    revision: str | None = None,
    encoder_only: bool = False,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """The official tokenizer in a hub-layout folder, or in hub repo ``path_or_repo_id`` (fetched through
    :func:`fourm_core.hub.resolve`, honouring ``HF_HUB_OFFLINE`` and the cache), built, strictly loaded, in eval mode.

    ``encoder_only`` builds the encoder + quantizer (``VQ``) and ignores the decoder's weights (tokenizing only)."""
    folder = _local_folder(path_or_repo_id, revision)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise OfficialTokenizerError(f"{folder}: no {CONFIG_FILE} (an official tokenizer folder holds it and weights)")
    if not weights_path.is_file():
        raise OfficialTokenizerError(f"{folder}: no {WEIGHTS_FILE} (only safetensors weights are read, never pickles)")
    try:
        data = read_json(config_path, what="tokenizer config")
    except FileFormatError as exc:
        raise OfficialTokenizerError(str(exc)) from None
    config = official_config(data)
    if config is None:
        kind = "a JSON object" if isinstance(data, Mapping) else f"a JSON {type(data).__name__}"
        raise OfficialTokenizerError(
            f"{config_path}: not an ml-4m tokenizer config ({kind} without enc_type / dec_type / quant_type)"
        )
    name = official_class_name(config)
    if encoder_only:
        cls = _import_class("VQ")
        accepted, _ = cls.config_keys()  # type: ignore[attr-defined]
        config = {k: v for k, v in config.items() if k in accepted}
    else:
        cls = _import_class(name)
    try:
        model = cls.from_config(config, source=str(config_path))  # type: ignore[attr-defined]
    except TypeError as exc:  # a value of the wrong kind reaching a constructor
        raise OfficialTokenizerError(f"{config_path}: cannot build {cls.__name__} ({one_line(str(exc))})") from None
    state = load_safetensors(weights_path, what="tokenizer weights")
    if encoder_only:
        state = {k: v for k, v in state.items() if not k.startswith(_DECODER_PREFIXES)}
    _check_keys(model, state, weights_path)
    model.load_state_dict(state, strict=True)
    loaded: nn.Module = model.to(map_location).eval()
    return loaded
