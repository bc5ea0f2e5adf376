"""From a store sample to what masking and collation take: one content entry per model key.

:class:`StoreDataset` gives ``{modality: {array: value}}``; :class:`~fourm_core.data.masking.FourMMasker` and
:class:`~.collate.Collator` want, per model key, token ids, pixels, text-vocabulary ids or embedding rows.
:class:`SampleBuilder` is that step, as ml-4m's transforms do it at load time:

* image / global tokens (read in ``"tokens"`` form, one crop): an int64 tensor of ids;
* pixels (``"raw"``): a float32 (C, H, W) tensor, ImageNet mean/std normalised (ml-4m's ``RGBTransform``), cropped
  and flipped like the chosen token crop when the sample carries one;
* sequences (``"raw"``, or ``"raw+tokens"`` when items carry tokenizer ids): the key's serializer writes the official
  string (random orders from ``rng``), the text vocabulary encodes it and ``[EOS]`` ends it; span keys give a 1-D
  tensor truncated to ``max_tokens``, chunk keys a list of id chunks with ``[EOS]`` as its own last chunk;
* sequence embeddings (``"raw"``): float32 rows (rows x width), at most ``max_tokens``.

Empty modalities (absent, unlabelled, nothing to serialise) are left out, so masking gives them no tokens. Nothing
here names a modality: kinds, arrays and codecs come from the specs and the registry.

Sequences with image coordinates (serializers marked ``spatial``) follow a non-identity crop through the
serializer's ``crop`` (boxes are clipped, renormalised and mirrored); spatial serializers without one are left out
of such samples (counted in ``uncropped``) rather than supervising the wrong places. With ``crop=0`` (the full
image) everything is used as stored.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core.data.masking import EOS_ID
from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.serialization import CropFollowing, FromStore, SerializationError, crop_is_identity
from fourm_core.spec import MaskingUnit, ModalityKind

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NonFiniteInputError",
    "SampleBuilder",
    "form_of",
    "forms_for",
    "open_store_dataset",
    "untokenised_modalities",
]

#: ml-4m normalises RGB pixel inputs with the ImageNet statistics (``imagenet_default_mean_and_std=True``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RAW, _TOKENS = "raw", "tokens"
_TOKEN_KINDS = (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS)
#: what :func:`fourm_core.tokenizers.pretokenize.apply_crop` needs to resample pixels
_PIXEL_RESAMPLING = SimpleNamespace(name="pixels", resample="bilinear", flip_negates=())


def form_of(spec: Any) -> str:
    """The :class:`StoreDataset` form a modality is read in for training: pre-tokenised grids and globals as
    ``"tokens"``, sequences whose items carry tokenizer ids as ``"raw+tokens"``, everything else ``"raw"``."""
    if spec.kind in _TOKEN_KINDS:
        return _TOKENS
    if spec.kind == ModalityKind.SEQUENCE and any(a.form == _TOKENS for a in spec.storage):
        return f"{_RAW}+{_TOKENS}"
    return _RAW


def forms_for(registry: Any, store_parts: Iterable[str]) -> dict[str, str]:
    """``{modality: form}`` for every registered modality whose parts in that form are all in ``store_parts``
    (a store's ``parts()``): the modalities and forms to open a :class:`StoreDataset` with."""
    parts = set(store_parts)
    out = {}
    for m in registry.modalities():
        form = form_of(m.spec)
        if all(f"{m.name}/{f}" in parts for f in form.split("+")):
            out[m.name] = form
    return out


def untokenised_modalities(registry: Any, store_parts: Iterable[str]) -> list[str]:
    """Modalities whose data a store holds (their raw part, or the part their tokenizer reads: ``tok_rgb`` reads
    ``rgb``) but not their training form because the tokens are missing: what :func:`forms_for` leaves out until
    ``fourm data tokenize`` has run."""
    parts = set(store_parts)
    out = []
    for m in registry.modalities():
        forms = form_of(m.spec).split("+")
        if _TOKENS not in forms or all(f"{m.name}/{f}" in parts for f in forms):
            continue
        source = getattr(m.spec.tokenizer, "source", None)
        if f"{(source or m.name).split('.')[0]}/{_RAW}" in parts:
            out.append(m.name)
    return out


class NonFiniteInputError(ValueError):
    """A stored input array holds NaN or infinity: it would turn every loss it touches into NaN."""


def open_store_dataset(
    path: str | Path, registry: Any, crop: int | str | None = 0, seed: int = 0, **kwargs: Any
) -> Any:
    """A :class:`StoreDataset` over every modality the store holds in its training form (:func:`forms_for`)."""
    from fourm_core.data.loader import StoreDataset
    from fourm_core.storage.store import AlignedStore

    forms = forms_for(registry, AlignedStore.open(path, mode="r").parts())
    return StoreDataset(path, list(forms), form=forms, crop=crop, seed=seed, **kwargs)


@dataclass
class SampleBuilder:
    """Turns one :class:`StoreDataset` sample into ``{model key: content}`` for the masker and the collator.

    ``vocabulary`` is a :class:`~fourm_core.vocab.TextVocabulary` (anything with ``encode(text) -> list[int]``).
    ``skipped`` counts, per model key, the samples whose value could not be serialised (left out, like empties).
    ``truncated`` counts, per model key, the sequences cut to ``max_tokens`` (their ``[EOS]`` lost with the tail, as
    in ml-4m); the first cut of each key is also a warning, so a too-small budget is never silent.
    """

    registry: Any
    preset: str
    vocabulary: Any
    pixel_mean: Sequence[float] = IMAGENET_MEAN
    pixel_std: Sequence[float] = IMAGENET_STD
    skipped: dict[str, int] = field(default_factory=dict)
    #: per model key, samples left out because their image coordinates cannot follow a non-identity crop
    uncropped: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = self.registry.model_keys(self.preset)
        #: what each model key is (kind, sizes, masking unit); the members above give serializers and arrays
        self.table = KeyTable.from_registry(self.registry, self.preset)
        self._size: int | None = None

    # -- entry point ---------------------------------------------------------------------------------------------
    def __call__(
        self, sample: Mapping[str, Any], rng: random.Random | None = None, where: str = "a sample"
    ) -> dict[str, Any]:
        """Content per model key of ``sample``; ``rng`` draws serialisation orders and variants (canonical
        orders without it), so a fixed seed gives the same content every time. ``where`` names the sample in
        errors (``"world.zarr sample 12"``): a stored input with NaN or infinity is a :class:`NonFiniteInputError`."""
        crop = sample.get("crop") or {}
        out: dict[str, Any] = {}
        for key, members in self.keys.items():
            rows = {m.name: sample[m.name] for m in members if sample.get(m.name)}
            if not rows:
                continue
            spec, info = members[0].spec, self.table[key]
            if info.is_pixels or info.is_embedding:
                name, row = next(iter(rows.items()))
                _check_finite(row, f"{where}, modality {name!r}")
                if info.is_pixels:
                    value = self._pixels(spec, info, row, crop.get("settings"))
                else:
                    value = self._embedding(spec, info, row)
            elif info.is_sequence:
                value = self._sequence(key, members, rows, rng, crop.get("settings"))
            else:  # image and global tokens
                value = self._tokens(next(iter(rows.values())))
            if value is not None:
                out[key] = value
        return out

    # -- per kind ------------------------------------------------------------------------------------------------
    @staticmethod
    def _tokens(row: Mapping[str, Any]) -> torch.Tensor | None:
        ids = np.asarray(row[_TOKENS])
        if ids.ndim == 2:  # read without a crop choice: the first crop is the full image
            ids = ids[0]
        return torch.from_numpy(ids.astype(np.int64)) if ids.size else None

    def _pixels(self, spec: Any, info: KeyInfo, row: Mapping[str, Any], setting: Any) -> torch.Tensor:
        array = np.asarray(row[_first_raw(spec)])
        if setting is not None:
            from fourm_core.tokenizers.pretokenize import apply_crop

            array = apply_crop(array, _PIXEL_RESAMPLING, setting, array.shape[0])  # type: ignore[arg-type]
        x = torch.from_numpy(np.ascontiguousarray(array)).to(torch.float32)
        x = (x[..., None] if x.ndim == 2 else x).permute(2, 0, 1) / 255.0
        size = info.image_size
        if size is not None and tuple(x.shape[1:]) != (size, size):
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        c = x.shape[0]
        mean = torch.tensor(self.pixel_mean[:c], dtype=torch.float32).view(c, 1, 1)
        std = torch.tensor(self.pixel_std[:c], dtype=torch.float32).view(c, 1, 1)
        return (x - mean) / std

    def _embedding(self, spec: Any, info: KeyInfo, row: Mapping[str, Any]) -> torch.Tensor | None:
        rows = np.asarray(row[_first_raw(spec)], dtype=np.float32)
        rows = rows.reshape(rows.shape[0], -1)[: info.max_tokens]
        return torch.from_numpy(np.ascontiguousarray(rows)) if len(rows) else None

    def _image_size(self) -> int:
        """Side of the stored images the crop settings are in pixels of (the pixel modality's layout)."""
        if self._size is None:
            sizes = [info.image_size for info in self.table.values() if info.is_pixels]
            self._size = int(sizes[0]) if sizes and sizes[0] else 0
        return self._size

    def _sequence(
        self,
        key: str,
        members: Sequence[Any],
        rows: Mapping[str, Mapping[str, Any]],
        rng: random.Random | None,
        setting: Any = None,
    ) -> torch.Tensor | list[list[int]] | None:
        serializer = self.registry.key_serializer(key, self.preset)
        info = self.table[key]
        try:
            if len(members) > 1:  # a group: {member: its stored value}
                value: Any = {name: _single(row) for name, row in rows.items()}
            elif isinstance(serializer, FromStore):  # items plus their tokens (poses, instances)
                value = serializer.from_store(dict(next(iter(rows.values()))), rng)
            else:
                value = _single(next(iter(rows.values())))
                if hasattr(serializer, "choose"):  # several stored variants: draw one
                    value = serializer.choose(value, rng if rng is not None else random.Random(0))
            if getattr(serializer, "spatial", False) and not crop_is_identity(setting, self._image_size()):
                if not isinstance(serializer, CropFollowing) or len(members) > 1:
                    self.uncropped[key] = self.uncropped.get(key, 0) + 1
                    return None  # image coordinates that cannot follow the crop: left out, never misaligned
                value = serializer.crop(value, setting, self._image_size())
            text = serializer.serialize(value, rng)
        except (SerializationError, KeyError):
            self.skipped[key] = self.skipped.get(key, 0) + 1
            return None
        if not text.strip():
            return None
        if info.masking == MaskingUnit.CHUNK:
            chunks = [self.vocabulary.encode(c) for c in self.registry.masking_chunks(members[0].name, text)]
            return [c for c in chunks if c] + [[EOS_ID]]
        ids = list(self.vocabulary.encode(text)) + [EOS_ID]
        if len(ids) > info.max_tokens:
            self._truncated(key, len(ids), info.max_tokens)
            ids = ids[: info.max_tokens]
        return torch.tensor(ids, dtype=torch.long)

    def _truncated(self, key: str, length: int, budget: int) -> None:
        """Count a sequence cut to its budget; warn at the first cut of each key (later ones are only counted)."""
        self.truncated[key] = self.truncated.get(key, 0) + 1
        if self.truncated[key] == 1:
            warnings.warn(
                f"{key}: a sequence of {length} tokens (with [EOS]) is cut to its budget of {budget}, losing its "
                f"[EOS]; further cuts of {key!r} are counted in SampleBuilder.truncated, not warned",
                UserWarning,
                stacklevel=4,
            )

    # -- batches -------------------------------------------------------------------------------------------------
    def build_batch(
        self,
        samples: Sequence[Mapping[str, Any]],
        masker: Any,
        collator: Any,
        seeds: Sequence[int] | None = None,
    ) -> Any:
        """Build, mask and collate ``samples`` into one :class:`~fourm_core.data.collate.CollatedBatch`; sample ``i``
        draws its serialisation from ``random.Random(seeds[i])`` and its masks from ``default_rng(seeds[i])``
        (without ``seeds``: canonical serialisation and the masker's own generator)."""
        contents, masks = [], []
        for i, sample in enumerate(samples):
            seed = None if seeds is None else int(seeds[i])
            content = self(sample, None if seed is None else random.Random(seed))
            rng = None if seed is None else np.random.default_rng(seed)
            contents.append(content)
            masks.append(masker(collator.masking_sample(content), rng))
        return collator(contents, masks)


def _check_finite(row: Mapping[str, Any], where: str) -> None:
    """Refuse a stored float array with NaN or infinity, naming the sample, the modality and the array."""
    for name, value in row.items():
        array = np.asarray(value) if not isinstance(value, torch.Tensor) else value.numpy()
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise NonFiniteInputError(
                f"{where}, array {name!r}: {bad} of {array.size} values are NaN or infinite; expected finite numbers "
                "(relabel the sample or drop it)"
            )


def _first_raw(spec: Any) -> str:
    """Name of the first raw array a modality stores (its data for pixels and embeddings)."""
    return next(a.name for a in spec.storage if a.form == _RAW)


def _single(row: Mapping[str, Any]) -> Any:
    """The stored value of a one-array row (a caption's text, a record's values)."""
    raw = {k: v for k, v in row.items() if k != _TOKENS}
    if len(raw) != 1:
        raise KeyError(f"cannot serialise a row of arrays {sorted(row)} without the codec's from_store")
    return next(iter(raw.values()))
