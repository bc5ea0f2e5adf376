"""The published 4M models (EPFL-VILAB's 4M-7 / 4M-21 / T2I / SR checkpoints) read into a :class:`FourMNetwork`.

ml-4m publishes a model in one of two forms, both read here without unpickling anything:

* the hub layout ``config.json`` + ``model.safetensors`` (or ``model.safetensors.index.json`` and its shards), as
  ``huggingface_hub``'s ``PyTorchModelHubMixin`` writes it; ``config.json`` holds ``FM(config)``'s flat kwargs
  (a ``{"config": {...}}`` wrapper is accepted too);
* a bare ``.safetensors`` file whose header ``__metadata__`` holds the same config, every value a string that
  ml-4m's ``load_safetensors`` parses with YAML ``safe_load`` (``"['caption', 'det']"``, ``"768"``, ``"True"``,
  ``"None"``).

A hub id (``EPFL-VILAB/4M-21_B``) is first brought into the local hub cache by :func:`fourm_core.hub.resolve`.

The official config has no key table: :func:`official_config` builds it from the installed plugins as ml-4m's
``FM`` wrapper builds its ``modality_info`` (:func:`fourm_core.model.config.official_key_table`), with ``FM``'s
other rules: decoder heads untied from the token embeddings, LayerNorm eps 1e-6 with ``norm_bias``, the activation
named by ``act_layer``. :func:`load_official` then loads the weights strictly.

CI fixtures extension: a ``config.json`` may carry ``"fourm_size_overrides": {"model": {...}}``, fields applied on
top of the config (a model config names its sizes directly, so fixtures rarely need it; it is read so that every
official loader in fourm follows the same fixture convention). Real hub configs never have it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fourm_core.errors import FileFormatError, load_safetensors, one_line, read_json
from fourm_core.hub import resolve
from fourm_core.model.config import CONFIG_NAME, FourMConfig, is_official_config
from fourm_core.model.state import state_mismatch

__all__ = [
    "INDEX_NAME",
    "WEIGHTS_NAME",
    "is_official_checkpoint",
    "load_official",
    "official_config",
    "parse_metadata",
    "read_official",
    "read_official_config",
]

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
#: ml-4m's ``safe_parse_metadata`` leaves longer strings unparsed (``MAX_LEN_YAML_PARSE``).
MAX_LEN_YAML_PARSE = 10_000
#: Keys a safetensors header may carry that are not model config (the safetensors convention ``format: pt``).
_NOT_CONFIG = {"format"}
SIZE_OVERRIDES = "fourm_size_overrides"


def parse_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A safetensors ``__metadata__`` dict parsed as ml-4m's ``load_safetensors`` parses it: every string value of
    at most 10,000 characters through YAML ``safe_load`` (``None`` spelled as YAML ``null``), others kept as is."""
    import yaml

    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(value, str) or len(value) > MAX_LEN_YAML_PARSE:
            out[key] = value
            continue
        try:
            out[key] = yaml.safe_load(value.replace("None", "null"))
        except yaml.YAMLError:
            out[key] = value
    return out


def _header_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (header only; the tensors are not read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: not a readable safetensors file ({one_line(str(exc))})") from None


def _unwrap(data: Any, where: Path) -> dict[str, Any]:
    if isinstance(data, Mapping) and set(data) == {"config"} and isinstance(data["config"], Mapping):
        data = data["config"]
    if not isinstance(data, Mapping):
        raise FileFormatError(f"{where}: a model config holds a mapping")
    return dict(data)


def _config_of_file(path: Path) -> dict[str, Any]:
    meta = {k: v for k, v in parse_metadata(_header_metadata(path)).items() if k not in _NOT_CONFIG}
    if not meta:
        raise FileFormatError(
            f"{path}: the safetensors header holds no model config (__metadata__ is empty); put the model's "
            f"{CONFIG_NAME} beside it in a folder and give the folder"
        )
    return _unwrap(meta, path)


def _local(path_or_id: str | os.PathLike[str], revision: str | None) -> Path:
    return resolve(path_or_id, revision=revision, kind="model")


def read_official_config(path_or_id: str | os.PathLike[str], revision: str | None = None) -> dict[str, Any]:
    """The official config of a folder (``config.json``), a bare ``.safetensors`` (its metadata) or a hub id,
    without reading the weights (cheap: for checks before loading, the key set of a fine-tuning source ...)."""
    path = _local(path_or_id, revision)
    if path.is_file():
        return _config_of_file(path)
    config = path / CONFIG_NAME
    if config.is_file():
        return _unwrap(read_json(config, "model config"), config)
    only = sorted(path.glob("*.safetensors"))
    if len(only) == 1:
        return _config_of_file(only[0])
    raise FileNotFoundError(2, f"no {CONFIG_NAME} (nor one .safetensors whose header holds its config)", str(path))


def _read_weights(folder: Path) -> dict[str, Any]:
    """``model.safetensors``, or every shard an ``model.safetensors.index.json`` names, merged."""
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return load_safetensors(single, "model weights file")
    index = folder / INDEX_NAME
    if index.is_file():
        weight_map = read_json(index, "sharded weights index").get("weight_map")
        if not isinstance(weight_map, Mapping):
            raise FileFormatError(f"{index}: no weight_map")
        tensors: dict[str, Any] = {}
        for shard in dict.fromkeys(weight_map.values()):
            tensors.update(load_safetensors(folder / str(shard), "model weights shard"))
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            shown = ", ".join(missing[:5])
            raise FileFormatError(f"{index}: the shards lack {len(missing)} tensors it names ({shown})")
        return tensors
    only = sorted(p for p in folder.glob("*.safetensors"))
    if len(only) == 1:
        return load_safetensors(only[0], "model weights file")
    raise FileNotFoundError(2, f"no {WEIGHTS_NAME} (nor {INDEX_NAME})", str(folder))


def read_official(
    path_or_id: str | os.PathLike[str], revision: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, state_dict)`` of a published model: a folder in the hub layout (``config.json`` +
    ``model.safetensors`` or a sharded index), a bare ``.safetensors`` whose metadata holds the config, or a hub id
    (fetched through :func:`fourm_core.hub.resolve`, ``revision`` pinning it). Never unpickles."""
    path = _local(path_or_id, revision)
    config = read_official_config(path)
    if path.is_file():
        return config, load_safetensors(path, "model weights file")
    return config, _read_weights(path)


def official_config(data: Mapping[str, Any], registry: Any = None, **overrides: Any) -> FourMConfig:
    """The :class:`FourMConfig` of an official config dict: the key table from ``registry`` (the installed plugins
    by default), ``FM``'s rules for the rest; ``overrides`` (and a fixture's ``fourm_size_overrides["model"]``)
    replace fields. Names ml-4m's ``FM`` would refuse are an error naming them."""
    data = dict(data)
    if set(data) == {"config"} and isinstance(data["config"], Mapping):
        data = dict(data["config"])
    extra = data.pop(SIZE_OVERRIDES, None) or {}
    data.update(extra.get("model", {}) if isinstance(extra, Mapping) else {})
    data.update(overrides)
    if registry is None:
        from fourm_core.registry import Registry

        registry = Registry()
    try:
        return FourMConfig.from_official(data, registry)
    except ValueError as exc:
        raise FileFormatError(one_line(str(exc))) from None


def is_official_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether a local ``path`` holds an official model (a bare ``.safetensors``, or a folder whose ``config.json``
    is ml-4m's) rather than a fourm run or export."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".safetensors"
    config = path / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return is_official_config(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def _strict_load(model: Any, state: Mapping[str, Any], where: Path) -> None:
    """Load ``state`` into ``model`` strictly; every missing, unexpected or misshapen key named in one line."""
    problems = state_mismatch(model.state_dict(), state)
    if problems:
        raise FileFormatError(f"{where}: the weights do not fit the config's model ({'; '.join(problems)})")
    model.load_state_dict(dict(state), strict=True)


def load_official(
    path_or_id: str | os.PathLike[str], registry: Any = None, revision: str | None = None, **overrides: Any
) -> Any:
    """The published model at ``path_or_id`` (folder, bare ``.safetensors`` or hub id) as a
    :class:`~fourm_core.model.network.FourMNetwork` in eval mode, loaded strictly (a missing or unexpected key is
    an error listing them with the file)."""
    from fourm_core.model.network import FourMNetwork

    path = _local(path_or_id, revision)
    data, state = read_official(path)
    model = FourMNetwork(official_config(data, registry, **overrides))
    _strict_load(model, state, path)
    return model.eval()
