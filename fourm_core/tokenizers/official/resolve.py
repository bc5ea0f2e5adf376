"""Which official tokenizer a modality uses, loaded once per hub repo: ``tokenizers="official"`` comes here.

A plugin declares its official assets (``ModalitySpec.official``: the hub id and the input normalisation);
:func:`official_tokenizer` fetches that repo through :func:`fourm_core.hub.resolve` (the hub cache, ``revision``,
``HF_HUB_OFFLINE``; offline and uncached it raises the hub's one-line :class:`~fourm_core.hub.HubAssetError` naming
the repo, before anything is built), loads the module with
:func:`~fourm_core.tokenizers.official.loader.load_official_tokenizer` and wraps it for the modality in an
:class:`~fourm_core.tokenizers.official.adapter.OfficialTokenizer`. Modules are cached per (hub id, revision), so
modalities sharing a repo (Canny and SAM edges) share one module, and each keeps its own stored form.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fourm_core.errors import UserError, read_json

if TYPE_CHECKING:
    import torch

    from fourm_core.registry import Registry
    from fourm_core.spec import ModalitySpec
    from fourm_core.tokenizers.official.adapter import OfficialTokenizer

__all__ = [
    "OFFICIAL",
    "NoOfficialTokenizerError",
    "cache_status",
    "clear_cache",
    "hub_config",
    "load_module",
    "official_rows",
    "official_tokenizer",
]

#: The tokenizer "directory" that means the official tokenizers (``tokenizers="official"``, ``--tokenizers official``)
OFFICIAL = "official"

#: (hub id or folder, revision) -> (module, hub config)
_MODULES: dict[tuple[str, str | None], tuple[torch.nn.Module, dict[str, Any]]] = {}


class NoOfficialTokenizerError(UserError, LookupError):
    """The modality has no official tokenizer (its plugin declares none, or ml-4m has none for it)."""


def clear_cache() -> None:
    """Forget the loaded modules (tests; a process that wants to free their memory)."""
    _MODULES.clear()


def hub_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The flat constructor kwargs of an official tokenizer's ``config.json`` (a ``{"config": {...}}`` wrapper, as
    ``PyTorchModelHubMixin`` may write, is unwrapped)."""
    from fourm_core.tokenizers.official.loader import official_config

    path = Path(folder) / "config.json"
    config = official_config(read_json(path, "official tokenizer config"))
    if config is None:
        raise UserError(f"{path}: not an official ml-4m tokenizer config (no enc_type / dec_type / quant_type)")
    return config


def load_module(hub_id: str, revision: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The official tokenizer module of ``hub_id`` (a repo id or a local folder in the hub layout) and its hub
    config, loaded once per (hub id, revision)."""
    key = (hub_id, revision)
    if key not in _MODULES:
        from fourm_core.hub import resolve

        folder = resolve(hub_id, revision=revision, kind="tokenizer")  # fails first, before anything is built
        from fourm_core.tokenizers.official.loader import load_official_tokenizer

        _MODULES[key] = (load_official_tokenizer(folder), hub_config(folder))
    return _MODULES[key]


def _spec_of(spec_or_modality: Any, registry: Registry | None) -> ModalitySpec:
    """A ``ModalitySpec``, a registry ``Modality`` or a modality name (looked up in ``registry``) to its spec."""
    if isinstance(spec_or_modality, str):
        if registry is None:
            from fourm_core.registry import Registry

            registry = Registry()
        return registry.get(spec_or_modality).spec
    spec: ModalitySpec = getattr(spec_or_modality, "spec", spec_or_modality)
    return spec


def official_tokenizer(
    spec_or_modality: Any, registry: Registry | None = None, revision: str | None = None
) -> OfficialTokenizer:
    """The official tokenizer of a modality, wrapped for it: its plugin's declared hub id, normalisation and stored
    form. A modality without one raises :class:`NoOfficialTokenizerError` naming it; an uncached repo while offline
    raises the hub's one-line error naming the repo."""
    from fourm_core.tokenizers.official.adapter import OfficialTokenizer

    spec = _spec_of(spec_or_modality, registry)
    official = spec.official
    if official is None or official.hub_id is None:
        if official is None:
            why = "its plugin declares no official assets"
        elif official.text_tokenizer:
            why = f"it is text in the shared vocabulary ({official.text_tokenizer}), not a tokenized modality"
        elif official.encoder:
            why = f"its input comes from {official.encoder}"
        else:
            why = f"ml-4m gives it to the model as it is (normalisation {official.normalisation.value})"
        raise NoOfficialTokenizerError(f"modality {spec.name!r} has no official tokenizer: {why}")
    module, config = load_module(official.hub_id, revision)
    return OfficialTokenizer.for_spec(module, config, spec)


def cache_status(hub_id: str, revision: str | None = None) -> str:
    """Whether a tokenizer repo is in the local hub cache, asked of the cache alone (no network): ``yes`` (config and
    weights), ``partial`` (one of them) or ``no``."""
    from huggingface_hub import try_to_load_from_cache

    from fourm_core.hub import hub_cache_dir

    cache = hub_cache_dir()
    found = [
        isinstance(try_to_load_from_cache(hub_id, name, cache_dir=cache, revision=revision), str)
        for name in ("config.json", "model.safetensors")
    ]
    return "yes" if all(found) else "partial" if any(found) else "no"


def official_rows(registry: Registry, preset: str = "paper", cached: bool = True) -> list[dict[str, Any]]:
    """One row per modality that declares official assets: what ``fourm tokenizer list --official`` shows."""
    rows = []
    status: dict[str, str] = {}
    for modality in registry.modalities():
        official = modality.spec.official
        if official is None:
            continue
        hub_id = official.hub_id
        if hub_id is not None and cached and hub_id not in status:
            status[hub_id] = cache_status(hub_id)
        rows.append(
            {
                "modality": modality.name,
                "model_key": modality.model_key(preset),
                "hub_id": hub_id,
                "normalisation": official.normalisation.value,
                "tokens": official.layout_text,
                "resolution": official.resolution_text,
                "text_tokenizer": official.text_tokenizer,
                "teacher_input": official.teacher_input.value if official.teacher_input else None,
                "encoder": official.encoder,
                "cached": status.get(hub_id) if hub_id else None,
            }
        )
    return rows
