"""From stores to per-sample modality dicts for training: map-style datasets, mixtures and a text corpus.

A sample is ``{modality: {array: value}}`` with every requested modality present; a modality a dataset does not have
(a photo store has no depth, a text corpus has only captions) or that failed for that sample is an *empty* entry,
``{}``, which masking later turns into "no tokens from here" — the official mixture's ``make_empty_mod_dict`` idea
without fixed-size dummies.

Reads go block by block: a store is written in blocks of ``block_size`` samples, so reading a whole block once and
serving its samples from a small cache turns random access within a shuffled window into a few large reads.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fourm_core.storage.location import StoreLocation, as_location
from fourm_core.storage.store import AlignedStore

__all__ = ["BlockShuffleSampler", "MixtureDataset", "StoreDataset", "TextCorpusDataset"]

Sample = dict[str, dict[str, Any]]


class StoreDataset(Dataset):
    """The samples of one store, restricted to ``modalities``, in one stored form for all (``"raw"``, ``"tokens"``) or
    one per modality (``{"depth": "tokens", "caption": "raw"}``, others raw): training reads pre-tokenised images
    next to raw sequences that are serialised at load time. ``"raw+tokens"`` merges both parts (poses need their
    stored parameters and their pose tokens).

    Multi-crop stores (``fourm data tokenize --crops K``) keep K crops of every image token grid. ``crop=None`` returns
    all K rows; an integer picks that crop for every sample; ``"random"`` draws one per sample from
    ``(seed, epoch, index)`` (call :meth:`set_epoch`). The chosen crop's ``[top, left, h, w, flip]`` row is returned
    under ``sample["crop"]`` so transforms of raw modalities can follow it.

    Worker processes each open their own handle (the store object is rebuilt lazily after pickling, from the
    store's location: a path, or a URL with its storage options).
    """

    def __init__(
        self,
        path: str | Path | StoreLocation,
        modalities: Sequence[str],
        form: str | Mapping[str, str] = "raw",
        cache_blocks: int = 8,
        source_fields: Sequence[str] = (),
        crop: int | str | None = None,
        seed: int = 0,
    ) -> None:
        self.location = as_location(path)
        #: the store's path or URL, as messages show it
        self.path = self.location.display()
        self.modalities = list(modalities)
        self.forms = {m: form if isinstance(form, str) else form.get(m, "raw") for m in self.modalities}
        self.cache_blocks = cache_blocks
        self.source_fields = list(source_fields)
        self.crop, self.seed, self.epoch = crop, seed, 0
        store = AlignedStore.open(self.location, mode="r")
        self.n = store.n_samples
        self.block_size = store.block_size
        parts = set(store.parts())
        self.present = [m for m in self.modalities if all(f"{m}/{f}" in parts for f in self.forms[m].split("+"))]
        #: token arrays stored as (K crops, L tokens): the ones a crop choice applies to
        self.cropped = {
            (m, name)
            for m in self.present
            for f in self.forms[m].split("+")
            for name, layout in store.layouts(f"{m}/{f}").items()
            if f == "tokens" and not layout.ragged and len(layout.shape) == 2
        }
        self.n_crops = store.layouts("crops")["settings"].shape[0] if "crops" in parts else 1
        if isinstance(crop, int) and not 0 <= crop < self.n_crops:
            raise ValueError(f"{self.path} has {self.n_crops} crops per sample; crop {crop} does not exist")
        if isinstance(crop, str) and crop != "random":
            raise ValueError(f"crop must be None, an index or 'random', got {crop!r}")
        self._store: AlignedStore | None = None
        self._cache: OrderedDict[tuple[str, int], list[Any]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"], state["_cache"] = None, OrderedDict()
        # a location without its cached filesystem: fsspec clients must not cross a fork or a pickle
        state["location"] = StoreLocation(self.location.url, dict(self.location.options), self.location.local)
        return state

    def __len__(self) -> int:
        return self.n

    def _block(self, part: str, block: int) -> list[Any]:
        key = (part, block)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._store is None:
            self._store = AlignedStore.open(self.location, mode="r")
        rows = self._store.read_block(part, block)
        self._cache[key] = rows
        if len(self._cache) > self.cache_blocks * max(1, len(self.present) + 1):
            self._cache.popitem(last=False)
        return rows

    def __getitem__(self, index: int) -> Sample:
        return self.read(index)

    def read(self, index: int, crop: int | None = None) -> Sample:
        """Sample ``index``; ``crop`` overrides the dataset's crop choice for this read (a trainer that derives
        every random choice from its sample position picks the crop itself)."""
        if not 0 <= index < self.n:
            raise IndexError(f"sample {index} outside 0..{self.n - 1} of {self.path}")
        block, offset = divmod(index, self.block_size)
        sample: Sample = {m: {} for m in self.modalities}
        for m in self.present:
            rows = [self._block(f"{m}/{f}", block)[offset] for f in self.forms[m].split("+")]
            if all(row is not None for row in rows):
                sample[m] = rows[0] if len(rows) == 1 else {k: v for row in rows for k, v in row.items()}
        if self.source_fields:
            row = self._block("source", block)[offset] or {}
            sample["source"] = {f: row[f] for f in self.source_fields if f in row}
        if crop is not None and not 0 <= crop < self.n_crops:
            raise ValueError(f"{self.path} has {self.n_crops} crops per sample; crop {crop} does not exist")
        if self.crop is not None or crop is not None:
            k = crop if crop is not None else self._choose_crop(index)
            for m, name in self.cropped:
                if name in sample[m]:
                    sample[m] = {**sample[m], name: sample[m][name][k]}
            settings = self._block("crops", block)[offset] if self.n_crops > 1 else None
            sample["crop"] = {"index": k, "settings": settings["settings"][k] if settings else None}
        return sample

    def set_epoch(self, epoch: int) -> None:
        """A new draw of random crops."""
        self.epoch = epoch

    def _choose_crop(self, index: int) -> int:
        if isinstance(self.crop, int):
            return self.crop
        # one draw per epoch for every sample (a generator per sample cost ~10 % of a token read)
        if getattr(self, "_draw_epoch", None) != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._draws = rng.integers(self.n_crops, size=self.n)
            self._draw_epoch = self.epoch
        return int(self._draws[index])


class TextCorpusDataset(Dataset):
    """Text-only samples (language co-training): each document becomes ``{text_modality: {"text": doc}}``."""

    def __init__(self, documents: Iterable[str], text_modality: str, modalities: Sequence[str] = ()) -> None:
        self.documents = [d for d in documents if d.strip()]
        self.text_modality = text_modality
        self.modalities = list(dict.fromkeys([*modalities, text_modality]))

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: int) -> Sample:
        sample: Sample = {m: {} for m in self.modalities}
        sample[self.text_modality] = {"text": self.documents[index]}
        return sample


class MixtureDataset(Dataset):
    """Several datasets drawn with weights, as in 4M-21's co-training (e.g. 0.6 / 0.2 / 0.2).

    Index ``i`` deterministically maps to (dataset, sample) through a seeded draw, so the mixture is a map-style
    dataset that shuffles, shards and resumes like any other; every sample carries the union of modalities (empty
    where a dataset has none) and ``"dataset"``, the index of the dataset it came from.
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float], length: int, seed: int = 0) -> None:
        if len(datasets) != len(weights) or not datasets:
            raise ValueError("give one weight per dataset")
        w = np.asarray(weights, np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative and not all zero, got {list(weights)}")
        self.datasets = list(datasets)
        self.weights = w / w.sum()
        self.length = length
        self.seed = seed
        self.cumulative = np.cumsum(self.weights)
        self.modalities = list(dict.fromkeys(m for d in self.datasets for m in getattr(d, "modalities", [])))

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset, sample index) of mixture item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        which = int(bisect.bisect_right(self.cumulative.tolist(), rng.random()))
        which = min(which, len(self.datasets) - 1)
        return which, int(rng.integers(len(self.datasets[which])))

    def __getitem__(self, index: int) -> Sample:
        which, inner = self.locate(index)
        sample = self.datasets[which][inner]
        out: Sample = {m: {} for m in self.modalities}
        out.update(sample)
        out["dataset"] = {"index": which}
        return out


class BlockShuffleSampler(Sampler[int]):
    """Shuffles blocks, then samples inside a window of ``window_blocks`` blocks: near-random order with reads that
    stay within a few cached blocks (what makes random access fast on a block store)."""

    def __init__(self, n: int, block_size: int, window_blocks: int = 4, seed: int = 0) -> None:
        self.n, self.block_size, self.window_blocks, self.seed = n, block_size, window_blocks, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """A new order per epoch, reproducible."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        blocks = torch.randperm(-(-self.n // self.block_size), generator=g).tolist()
        for w in range(0, len(blocks), self.window_blocks):
            indices = [
                i
                for b in blocks[w : w + self.window_blocks]
                for i in range(b * self.block_size, min((b + 1) * self.block_size, self.n))
            ]
            yield from (indices[k] for k in torch.randperm(len(indices), generator=g).tolist())
