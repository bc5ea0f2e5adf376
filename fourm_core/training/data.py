"""Training batches as a pure function of the sample position: what makes resume exact and ranks agree.

Sample position ``p`` counts samples over the whole run. Everything random about sample ``p`` (which dataset, which
sample, which pre-tokenised crop, the serialisation order, the masking) is drawn from ``default_rng([seed, p])``, so
a resumed run needs only the step number to continue with exactly the batches it would have seen, and a run on two
processes with half the micro-batch each sees the same samples as one process with two accumulation steps
(:func:`sample_position` lays positions out that way).

Datasets: stores (pre-tokenised images, raw sequences serialised at load time) and text corpora (text-only
co-training), read in epochs of a seeded block-window shuffle; several are mixed by weight. Each dataset has its
own masker, with its own mixture (official ml-4m YAML or ours) or the default all-to-all mixture over its keys.
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.data.collate import CollatedBatch, Collator
from fourm_core.data.loader import StoreDataset, TextCorpusDataset
from fourm_core.data.masking import (
    FourMMasker,
    KeyAlphas,
    MaskingMixture,
    MaskingStrategy,
    TokenRange,
    load_mixture,
)
from fourm_core.data.pipeline import SampleBuilder, forms_for, untokenised_modalities
from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.storage.location import StoreLocation
from fourm_core.storage.store import AlignedStore
from fourm_core.training.config import DatasetConfig, RunConfig

__all__ = ["ALL_TO_ALL_ALPHAS", "TrainingData", "adapt_mixture_keys", "default_mixture", "sample_position"]

#: the all-to-all components of the 4M-21 mixture: Dirichlet alphas from "one modality" to "all evenly"
ALL_TO_ALL_ALPHAS = (0.01, 0.1, 1.0, 10.0)
#: store blocks whose samples are shuffled together (see :meth:`TrainingData.order`)
WINDOW_BLOCKS = 4
_RESOLUTION = re.compile(r"@\d+$")


def sample_position(step: int, micro: int, rank: int, index: int, *, accum: int, world: int, micro_batch: int) -> int:
    """Global position of sample ``index`` of micro-batch ``micro`` on ``rank`` at optimiser step ``step``.

    Micro-batches of one step are laid out accumulation-major then rank, so (1 process, accumulation 2) and
    (2 processes, accumulation 1) assign the same samples to the same half-batches."""
    return ((step * accum + micro) * world + rank) * micro_batch + index


def default_mixture(
    keys: Mapping[str, KeyInfo],
    input_tokens: TokenRange,
    target_tokens: TokenRange,
) -> MaskingMixture:
    """All-to-all with alphas 0.01 / 0.1 / 1 / 10 over every key, plus "pixels to all" (pixel keys as the only
    inputs, every other key a target), equally weighted: the 4M-21 mixture without its caption/T5 biases, which
    name modalities (give the official file or your own to get them)."""
    strategies = [
        MaskingStrategy(alphas={k: KeyAlphas(input_alpha=a, target_alpha=a) for k in keys}) for a in ALL_TO_ALL_ALPHAS
    ]
    pixels = [k for k, info in keys.items() if info.is_pixels]
    if pixels:
        strategies.append(
            MaskingStrategy(
                alphas={
                    k: KeyAlphas(input_alpha=1.0 if k in pixels else 0.0, target_alpha=0.0 if k in pixels else 0.5)
                    for k in keys
                }
            )
        )
    return MaskingMixture(strategies=strategies, input_tokens=input_tokens, target_tokens=target_tokens)


def adapt_mixture_keys(mixture: MaskingMixture, keys: Sequence[str]) -> MaskingMixture:
    """Rename mixture keys to ``keys`` where they differ only by the ``@resolution`` suffix (an official 224 px
    mixture on a 64 px preset: ``tok_x@224`` -> ``tok_x@64``); keys with no counterpart are dropped."""
    by_base: dict[str, str] = {}
    for k in keys:
        by_base.setdefault(_RESOLUTION.sub("", k), k)
    strategies = []
    for s in mixture.strategies:
        alphas = {}
        for k, a in s.alphas.items():
            target = k if k in keys else by_base.get(_RESOLUTION.sub("", k))
            if target is not None:
                alphas[target] = a
        strategies.append(MaskingStrategy(alphas=alphas))
    return mixture.model_copy(update={"strategies": strategies})


def _untokenised_message(d: DatasetConfig, modalities: Sequence[str]) -> str:
    return (
        f"dataset {d.name!r}: {d.store} holds the data of {', '.join(modalities)} but not their tokens (not "
        f"pre-tokenised): run `fourm data tokenize {d.store}` first"
    )


def _check_micro_batch(config: RunConfig, sources: Sequence[_Source]) -> None:
    """A micro-batch larger than every training sample there is would repeat samples within one batch."""
    total, micro = sum(s.train for s in sources), config.engine.micro_batch_size
    if micro > total:
        names = ", ".join(repr(s.config.name) for s in sources)
        raise ValueError(
            f"engine.micro_batch_size {micro} is larger than the {total} training samples of dataset {names}: "
            f"use a micro-batch of at most {total}"
        )


@dataclass
class _Source:
    """One configured dataset, opened: its samples, the positions it trains on, its masker."""

    config: DatasetConfig
    dataset: Any
    train: int
    masker: FourMMasker
    n_crops: int = 1
    val: list[int] = field(default_factory=list)

    def read(self, index: int, crop: int | None) -> dict[str, Any]:
        if isinstance(self.dataset, StoreDataset):
            return self.dataset.read(index, crop if self.n_crops > 1 else None)
        return self.dataset[index]


class TrainingData:
    """Batches for a :class:`RunConfig`: ``batch(position, n)`` is the micro-batch of samples ``position ..
    position + n - 1``; ``validation_batches(n)`` the fixed held-out batches (crop 0, masks from a fixed seed)."""

    def __init__(self, config: RunConfig, registry: Any, vocabulary: Any) -> None:
        self.config = config
        self.registry = registry
        self.preset = config.model.preset
        self.builder = SampleBuilder(registry, self.preset, vocabulary)
        all_info = KeyTable.from_registry(registry, self.preset, text_vocab_size=vocabulary.size)
        opened = [self._open(d) for d in config.datasets]
        provided: dict[str, None] = {}
        for _, modalities in opened:
            for m in modalities:
                provided[registry.get(m).model_key(self.preset)] = None
        keys = [k for k in all_info if k in provided]
        if config.model.keys is not None:
            unknown = set(config.model.keys) - set(all_info)
            if unknown:
                raise ValueError(f"model.keys: no plugin provides {sorted(unknown)} in preset {self.preset!r}")
            keys = [k for k in keys if k in config.model.keys]
        if not keys:
            raise ValueError("no dataset provides any model key; pre-tokenise the stores (fourm data tokenize)")
        #: the key table of the model keys this data provides (what a model trained on it must have)
        self.keys: KeyTable = all_info.subset(keys)
        self.collator = Collator(self.keys)
        in_range, tgt_range = (
            TokenRange(low=lo, high=hi) for lo, hi in (config.budget("input"), config.budget("target"))
        )
        self.sources: list[_Source] = []
        for d, (dataset, _) in zip(config.datasets, opened, strict=True):
            if d.mixture:
                mixture = adapt_mixture_keys(load_mixture(d.mixture), keys).model_copy(
                    update={"input_tokens": in_range, "target_tokens": tgt_range}
                )
            else:
                mixture = default_mixture(self.keys, in_range, tgt_range)
            n = len(dataset)
            if d.val_samples >= n:
                raise ValueError(f"dataset {d.name!r}: val_samples {d.val_samples} >= its {n} samples")
            n_crops = getattr(dataset, "n_crops", 1)
            self.sources.append(
                _Source(
                    d,
                    dataset,
                    n - d.val_samples,
                    FourMMasker(self.keys, mixture),
                    n_crops,
                    list(range(n - d.val_samples, n)),
                )
            )
        _check_micro_batch(config, self.sources)
        weights = np.array([s.config.weight for s in self.sources], dtype=np.float64)
        self.weights = weights / weights.sum()
        self._orders: dict[int, tuple[int, np.ndarray]] = {}

    # -- opening ------------------------------------------------------------------------------------------------
    def _open(self, d: DatasetConfig) -> tuple[Any, list[str]]:
        if d.text is not None:
            documents = [line.strip() for path in d.text for line in Path(path).read_text().splitlines()]
            dataset = TextCorpusDataset(documents, d.text_modality or "")
            if not len(dataset):
                raise ValueError(f"dataset {d.name!r}: no documents in {d.text}")
            self.registry.get(d.text_modality)  # unknown modality: a clear KeyError now, not mid-run
            return dataset, [d.text_modality or ""]
        assert d.store is not None
        location = StoreLocation.parse(d.store, d.storage_options)
        if not location.exists():
            raise FileNotFoundError(f"dataset {d.name!r}: no store at {d.store}")
        parts = AlignedStore.open(location, mode="r").parts()
        forms = forms_for(self.registry, parts)
        untokenised = untokenised_modalities(self.registry, parts)
        if d.modalities is not None:
            missing = set(d.modalities) - set(forms)
            asked = [m for m in untokenised if m in missing]
            if asked:
                raise ValueError(_untokenised_message(d, asked))
            if missing:
                raise ValueError(
                    f"dataset {d.name!r}: {d.store} has no {sorted(missing)} in training form (labelled and, for "
                    "image-like modalities, pre-tokenised)"
                )
            forms = {m: f for m, f in forms.items() if m in d.modalities}
        elif untokenised:
            # a store never tokenised would train on pixels and sequences alone: refuse; a partly tokenised one
            # (a tokenizer not trained yet) trains on what it has, but says what it leaves out
            if not any("tokens" in f for f in forms.values()):
                raise ValueError(_untokenised_message(d, untokenised))
            warnings.warn(_untokenised_message(d, untokenised) + " (training without them)", UserWarning, stacklevel=3)
        return StoreDataset(location, list(forms), form=forms, crop=None, seed=self.config.seed), list(forms)

    def forget_handles(self) -> None:
        """Drop every open store handle and block cache, so the next read opens the store anew: what a forked
        loader worker calls first (zarr and fsspec handles must not be shared across a fork). What is dropped is
        what each dataset itself drops when pickled (``__getstate__``), so this follows the dataset's own rule."""
        for source in self.sources:
            getstate = getattr(source.dataset, "__getstate__", None)
            if getstate is not None:
                state = getstate()
                if isinstance(state, dict):
                    source.dataset.__dict__.update(state)

    # -- positions ----------------------------------------------------------------------------------------------
    def order(self, which: int, epoch: int) -> np.ndarray:
        """Sample order of dataset ``which`` in ``epoch``: blocks shuffled, then samples shuffled within windows of
        :data:`WINDOW_BLOCKS` blocks. Near-random, yet consecutive positions stay within a few store blocks, so
        the dataset's block cache serves them (a plain permutation re-read a 64-sample block of every part for
        each sample: 1.2 s of a 2 s CPU step on a 2,048-scene store)."""
        cached = self._orders.get(which)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        source = self.sources[which]
        block = getattr(source.dataset, "block_size", source.train) or source.train
        rng = np.random.default_rng([self.config.seed, 1, which, epoch])
        blocks = rng.permutation(-(-source.train // block))
        parts = []
        for w in range(0, len(blocks), WINDOW_BLOCKS):
            window = np.concatenate(
                [np.arange(b * block, min((b + 1) * block, source.train)) for b in blocks[w : w + WINDOW_BLOCKS]]
            )
            parts.append(rng.permutation(window))
        order = np.concatenate(parts)
        self._orders[which] = (epoch, order)
        return order

    def locate(self, position: int) -> tuple[int, int, int | None, int]:
        """(dataset, sample index, crop, content seed) of sample ``position``.

        Position ``p`` picks a dataset by weight, then reads that dataset's epoch order at ``p`` (so with one
        dataset every sample is seen once per epoch; with several, each dataset's order is thinned by its share)."""
        rng = np.random.default_rng([self.config.seed, position])
        which = int(rng.choice(len(self.sources), p=self.weights)) if len(self.sources) > 1 else 0
        source = self.sources[which]
        epoch, offset = divmod(position, source.train)
        index = int(self.order(which, epoch)[offset])
        crop_choice = self.config.crop
        crop = int(rng.integers(source.n_crops)) if crop_choice == "random" else int(crop_choice)
        if crop >= source.n_crops:
            raise ValueError(f"dataset {source.config.name!r} has {source.n_crops} crops; crop {crop} does not exist")
        return which, index, crop, int(rng.integers(2**62))

    def content(self, which: int, index: int, crop: int | None, seed: int) -> tuple[dict[str, Any], Any]:
        """Builder content and masks of one sample."""
        source = self.sources[which]
        where = f"{source.config.store or source.config.name} sample {index}"
        content = self.builder(source.read(index, crop), random.Random(seed), where)
        content = {k: v for k, v in content.items() if k in self.keys}
        masks = source.masker(self.collator.masking_sample(content), np.random.default_rng(seed))
        return content, masks

    def batch(self, position: int, n: int) -> CollatedBatch:
        """The micro-batch of samples ``position .. position + n - 1``."""
        contents, masks = [], []
        for p in range(position, position + n):
            c, m = self.content(*self.locate(p))
            contents.append(c)
            masks.append(m)
        return self.collator(contents, masks)

    def validation_batches(self, batch_size: int) -> list[CollatedBatch]:
        """Held-out samples of every store (crop 0), masked from a fixed seed per sample: the same batches at
        every evaluation, so per-modality validation losses are comparable along the run."""
        items = [(w, i) for w, s in enumerate(self.sources) for i in s.val]
        batches = []
        for start in range(0, len(items), batch_size):
            contents, masks = [], []
            for w, i in items[start : start + batch_size]:
                seed = int(np.random.default_rng([self.config.seed, 2, w, i]).integers(2**62))
                c, m = self.content(w, i, 0 if self.sources[w].n_crops > 1 else None, seed)
                contents.append(c)
                masks.append(m)
            batches.append(self.collator(contents, masks))
        return batches

    @staticmethod
    def useful_tokens(collator: Collator, batch: CollatedBatch) -> tuple[int, int]:
        """(visible encoder inputs, real decoder targets) of a batch."""
        n_enc, n_dec = collator.token_counts(batch.mod_dict)
        return int(n_enc.sum()), int(n_dec.sum())


def cast_floats(batch: CollatedBatch, dtype: torch.dtype) -> CollatedBatch:
    """Pixel and embedding tensors in the model's dtype (bf16 training); ids and masks unchanged."""
    if dtype == torch.float32:
        return batch
    mod_dict = {
        k: {n: t.to(dtype) if t.is_floating_point() else t for n, t in d.items()} for k, d in batch.mod_dict.items()
    }
    return CollatedBatch(mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)
