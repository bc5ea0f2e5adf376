"""Query contents for retrieval and generation from what people have: raw text, or a stored sample.

Both come out in exactly the form :class:`~fourm_core.data.pipeline.SampleBuilder` gives the model in training, keyed
by model key, so a query is conditioned like a training input. Nothing here names a modality: keys and kinds come
from the pipeline's registry and the specs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fourm_core.inference.retrieval import RetrievalError
from fourm_core.spec import MaskingUnit, ModalityKind, Vocabulary

__all__ = ["dataset_preset", "describe_samples", "resolve_key", "store_inputs", "text_inputs"]

_RAW = "raw"
_TEXT_LAYOUT = "text"  # the storage layout kind of free-text arrays (fourm_core.storage.layout)


def resolve_key(registry: Any, preset: str, name: str) -> tuple[str, list[Any]]:
    """``(model key, member modalities)`` for a model key or a modality name in ``preset``."""
    keys = registry.model_keys(preset)
    if name in keys:
        return name, keys[name]
    if name in registry:
        key = registry.get(name).model_key(preset)
        return key, keys[key]
    raise RetrievalError(f"{name!r} is neither a model key nor a modality (keys in {preset}: {sorted(keys)})")


def text_inputs(pipe: Any, texts: Mapping[str, str]) -> dict[str, Any]:
    """Query contents from raw user text, per model key (or modality name) of a sequence in the text vocabulary.

    A modality that stores one free-text array (a caption) goes through :class:`SampleBuilder` exactly as in
    training (its serializer checks the text, ``[EOS]`` ends it); anything else (a group such as metadata, or a
    structured sequence) takes ``text`` as the already serialised string, encoded and chunked as the masker expects.
    """
    from fourm_core.data.masking import EOS_ID
    from fourm_core.data.pipeline import SampleBuilder

    registry, preset, vocabulary = pipe.registry, pipe.preset, pipe.vocabulary
    builder = SampleBuilder(registry, preset, vocabulary)
    out: dict[str, Any] = {}
    for name, text in texts.items():
        key, members = resolve_key(registry, preset, name)
        spec = members[0].spec
        if spec.kind != ModalityKind.SEQUENCE or spec.vocabulary != Vocabulary.TEXT:
            raise RetrievalError(f"{name!r} ({key}) is {spec.kind.value}; text queries need a text sequence key")
        raw = [a for a in spec.storage if a.form == _RAW]
        if len(members) == 1 and len(raw) == 1 and raw[0].dtype == _TEXT_LAYOUT:
            content = builder({members[0].name: {raw[0].name: text}}).get(key)
        elif spec.masking == MaskingUnit.CHUNK:
            chunks = [vocabulary.encode(c) for c in registry.masking_chunks(members[0].name, text)]
            content = [c for c in chunks if c] + [[EOS_ID]]
        else:
            import torch

            ids = list(vocabulary.encode(text)) + [EOS_ID]
            content = torch.tensor(ids[: spec.layout(preset).max_tokens], dtype=torch.long)
        if content is None:
            raise RetrievalError(f"{name!r}: the text {text!r} could not be serialised for {key!r}")
        out[key] = content
    return out


def store_inputs(pipe: Any, store_path: str | Path, index: int, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Query contents from stored sample ``index`` (full-image crop) in the pipeline's preset, restricted to
    ``keys`` (model keys or modality names; default every key the sample has): a query by another scene's
    modalities."""
    from fourm_core.data.pipeline import SampleBuilder, open_store_dataset

    registry, preset = pipe.registry, pipe.preset
    dataset = open_store_dataset(store_path, registry, crop=0)
    contents = SampleBuilder(registry, preset, pipe.vocabulary)(dataset[index])
    if keys is None:
        return contents
    wanted = [resolve_key(registry, preset, k)[0] for k in keys]
    missing = [k for k in wanted if k not in contents]
    if missing:
        raise RetrievalError(
            f"sample {index} of {store_path} has no {', '.join(missing)} (it has: "
            f"{', '.join(sorted(contents)) or 'nothing'})"
        )
    return {k: contents[k] for k in wanted}


def dataset_preset(store_path: str | Path) -> str:
    """The preset a store was written in."""
    from fourm_core.storage.store import AlignedStore

    return AlignedStore.open(store_path, mode="r").preset


def describe_samples(store_path: str | Path, registry: Any, indices: Sequence[int]) -> dict[int, str]:
    """A short text per sample for showing hits: the first free-text array any modality of the store holds (in
    registry order), or nothing when there is none. Generic on purpose: no modality is named."""
    from fourm_core.storage.store import AlignedStore

    store = AlignedStore.open(store_path, mode="r")
    parts = set(store.parts())
    for modality in registry.modalities():
        part = f"{modality.name}/{_RAW}"
        if part not in parts:
            continue
        names = [n for n, lay in store.layouts(part).items() if lay.kind == _TEXT_LAYOUT]
        if not names:
            continue
        out = {}
        for i in indices:
            try:
                out[int(i)] = str(store.read(part, int(i))[names[0]])
            except Exception:  # noqa: BLE001 (an unlabelled hit simply has no text)
                out[int(i)] = ""
        return out
    return {}
