"""Datasets over stores: per-sample modality dicts, empty entries for what is missing, weighted mixtures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from fourm_core.data.loader import BlockShuffleSampler, MixtureDataset, StoreDataset, TextCorpusDataset
from fourm_core.labeling.runner import label_store
from fourm_core.registry import Registry
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore
from helpers import EXAMPLE_PLUGIN, RANDOM_TEACHERS, BlobSource


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loader") / "s.zarr"
    store = create_source_store(path, BlobSource(40), 32, "tiny", 8)
    write_source(store, BlobSource(40))
    label_store(
        path,
        registry=Registry(disabled={EXAMPLE_PLUGIN}),
        only=["rgb", "depth", "det", "caption"],
        options=RANDOM_TEACHERS,
    )
    return path


def test_samples_hold_every_requested_modality_and_empty_entries(store_path: Path) -> None:
    ds = StoreDataset(store_path, ["rgb", "depth", "det", "caption", "normal"])
    assert len(ds) == 40
    sample = ds[3]
    np.testing.assert_array_equal(sample["depth"]["depth"], AlignedStore.open(store_path).read("depth/raw", 3)["depth"])
    assert sample["caption"]["text"] == "1 cups on the grass." and sample["det"]["boxes"][0]["label"] == "cup"
    assert sample["normal"] == {}  # not labelled in this store
    assert ds[7]["depth"] == {}  # the source sample failed, so every modality is empty


def test_a_dataloader_with_workers_reads_the_same(store_path: Path) -> None:
    ds = StoreDataset(store_path, ["depth"])
    loader = DataLoader(ds, batch_size=None, num_workers=2, sampler=BlockShuffleSampler(len(ds), 8, seed=1))
    seen = {}
    for i, sample in zip(BlockShuffleSampler(len(ds), 8, seed=1), loader):
        seen[i] = sample["depth"]
    assert sorted(seen) == list(range(40))
    np.testing.assert_array_equal(seen[12]["depth"], ds[12]["depth"]["depth"])


def test_block_shuffle_is_a_reproducible_permutation_per_epoch() -> None:
    sampler = BlockShuffleSampler(100, 16, window_blocks=2, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(100)) and first == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_mixture_follows_its_weights_and_fills_missing_modalities(store_path: Path) -> None:
    world = StoreDataset(store_path, ["rgb", "caption"])
    text = TextCorpusDataset(["a red cube.", "two dogs in a park."], "caption")
    mix = MixtureDataset([world, text], [0.8, 0.2], length=2000, seed=0)
    counts = Counter(mix.locate(i)[0] for i in range(2000))
    assert abs(counts[1] / 2000 - 0.2) < 0.03
    text_sample = next(mix[i] for i in range(50) if mix.locate(i)[0] == 1)
    assert text_sample["rgb"] == {} and text_sample["caption"]["text"] in text.documents
    again = MixtureDataset([world, text], [0.8, 0.2], length=2000, seed=0)
    assert [mix.locate(i) for i in range(50)] == [again.locate(i) for i in range(50)]
    with pytest.raises(ValueError, match="non-negative"):
        MixtureDataset([world], [0.0], 10)
