"""Store sample -> model batch: forms from specs, per-key content, masking, collation and a tiny FourMNetwork step."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.data.collate import Collator
from fourm_core.data.loader import StoreDataset
from fourm_core.data.masking import (
    EOS_ID,
    FourMMasker,
    KeyAlphas,
    MaskingMixture,
    MaskingStrategy,
    TokenRange,
)
from fourm_core.data.pipeline import IMAGENET_MEAN, IMAGENET_STD, SampleBuilder, forms_for, open_store_dataset
from fourm_core.keys import KeyTable
from fourm_core.labeling.runner import label_store
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.spec import MaskingUnit, ModalityKind
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
from fourm_core.tokenizers.pretokenize import tokenize_store
from fourm_core.tokenizers.training import collect, fit
from fourm_core.vocab import build_text_vocabulary
from helpers import RANDOM_TEACHERS

PRESET = "tiny"
LABELLED = [
    "rgb",
    "depth",
    "sam_instance",
    "human_poses",
    "caption",
    "det",
    "metadata_image",
    "metadata_semantic",
    "color_palette",
    "t5_caption",
]
TRAINED = ["depth", "sam_instance", "human_poses"]
SMALL = {"dim": 64, "enc_depth": 1, "dec_depth": 1, "heads": 2, "mlp_width": 128, "mlp_blocks": 1}


def small_tokenizer(registry: Registry, name: str) -> Tokenizer:
    config = config_from_spec(registry.get(name).spec, PRESET).model_copy(update=SMALL)
    if config.diffusion is not None:
        config = config.model_copy(update={"diffusion": config.diffusion.model_copy(update={"dim": 64, "depth": 1})})
    return Tokenizer(config)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    path = root / "w.zarr"
    source = SyntheticSource(48, 64, 3)
    store = create_source_store(path, source, 64, PRESET, 16)
    write_source(store, source)
    label_store(path, registry=registry, only=LABELLED, options=RANDOM_TEACHERS)
    store = AlignedStore.open(path, mode="r")
    for name in TRAINED:
        tok = small_tokenizer(registry, name)
        split = collect(store, tok.config, registry, 0.2)
        fit(tok, split.train, TrainConfig(steps=3, max_seconds=None, batch_size=8))
        tok.save_pretrained(root / "toks" / tok.name)
    tokenize_store(path, root / "toks", registry, crops=2, seed=0)
    return path


@pytest.fixture(scope="module")
def dataset(store_path: Path, registry: Registry) -> StoreDataset:
    return open_store_dataset(store_path, registry, crop="random", seed=0)


@pytest.fixture(scope="module")
def builder(registry: Registry, store_path: Path) -> SampleBuilder:
    store = AlignedStore.open(store_path, mode="r")
    texts = [row["text"] for b in range(store.n_blocks) for row in store.read_block("caption/raw", b) if row]
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    return SampleBuilder(registry, PRESET, build_text_vocabulary(texts, words))


def _mixture(keys: list[str]) -> MaskingMixture:
    alphas = {k: KeyAlphas(input_alpha=1.0, target_alpha=1.0) for k in keys}
    return MaskingMixture(
        strategies=[MaskingStrategy(alphas=alphas)],
        input_tokens=TokenRange(low=32, high=64),
        target_tokens=TokenRange(low=32, high=64),
    )


def test_forms_follow_the_specs(registry: Registry, store_path: Path, dataset: StoreDataset) -> None:
    parts = AlignedStore.open(store_path, mode="r").parts()
    forms = forms_for(registry, parts)
    for name, form in forms.items():
        spec = registry.get(name).spec
        if spec.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS):
            assert form == "tokens"
        elif spec.kind == ModalityKind.SEQUENCE and any(a.form == "tokens" for a in spec.storage):
            assert form == "raw+tokens"
        else:
            assert form == "raw"
        assert all(f"{name}/{f}" in parts for f in form.split("+"))
    assert forms["depth"] == "tokens" and forms["sam_instance"] == "raw+tokens" and forms["caption"] == "raw"
    assert "normal" not in forms  # not labelled, so not in the store
    assert forms_for(registry, []) == {}
    assert dataset.forms == forms


def test_contents_per_kind(registry: Registry, dataset: StoreDataset, builder: SampleBuilder) -> None:
    sample = dataset[9]
    content = builder(sample, random.Random(0))
    keys = registry.model_keys(PRESET)
    kinds = {k: ms[0].spec for k, ms in keys.items()}
    rgb_key, depth_key = registry.get("rgb").model_key(PRESET), registry.get("depth").model_key(PRESET)
    assert {rgb_key, depth_key, "caption", "det", "metadata", "t5_caption"} <= set(content)
    # instance points cannot follow a crop yet: present on the full image only
    assert ("sam_instance" in content) == (sample["crop"]["index"] == 0)
    assert registry.get("normal").model_key(PRESET) not in content  # empty modalities are left out
    for key, value in content.items():
        spec, layout = kinds[key], kinds[key].layout(PRESET)
        if spec.kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS):
            assert value.dtype == torch.long and value.shape == (layout.max_tokens,)
            assert 0 <= int(value.min()) and int(value.max()) < layout.vocab_size
        elif spec.kind == ModalityKind.PIXELS:
            assert value.dtype == torch.float32 and value.shape == (3, layout.image_size, layout.image_size)
        elif spec.kind == ModalityKind.SEQUENCE_EMBEDDING:
            assert value.dtype == torch.float32 and value.ndim == 2 and value.shape[1] == layout.feature_dim
            assert 0 < value.shape[0] <= layout.max_tokens
        elif spec.masking == MaskingUnit.CHUNK:
            assert value[-1] == [EOS_ID] and all(len(c) >= 2 for c in value[:-1])
        else:
            assert value.dtype == torch.long and int(value[-1]) == EOS_ID or len(value) == layout.max_tokens
            assert len(value) <= layout.max_tokens
    # tokens of the sample's crop; pixels follow that crop, normalised with the ImageNet statistics
    np.testing.assert_array_equal(content[depth_key].numpy(), sample["depth"]["tokens"])
    if sample["crop"]["index"] == 0:
        raw = torch.from_numpy(sample["rgb"]["rgb"]).float().permute(2, 0, 1) / 255
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        torch.testing.assert_close(content[rgb_key], (raw - mean) / std)


def test_caption_round_trips_and_chunks_are_whole_records(dataset: StoreDataset, builder: SampleBuilder) -> None:
    sample = dataset[3]
    content = builder(sample)
    codec = builder.registry.key_serializer("caption", PRESET)
    serialized = codec.serialize(sample["caption"]["text"])
    ids = builder.vocabulary.encode(serialized) + [EOS_ID]
    assert content["caption"].tolist() == ids[: len(content["caption"])]
    text = builder.vocabulary.decode(content["caption"][:-1].tolist())
    assert text.split()[:3] == sample["caption"]["text"].lower().split()[:3]
    # metadata: one chunk per field of every member, each chunk the vocabulary ids of its record
    chunks = content["metadata"]
    n_fields = sum(len(sample[m]["values"]) for m in ("metadata_image", "metadata_semantic") if sample[m])
    assert len(chunks) == n_fields + 1
    group = builder.registry.key_serializer("metadata", PRESET)
    values = {m: sample[m]["values"] for m in ("metadata_image", "metadata_semantic") if sample[m]}
    assert chunks[:-1] == [builder.vocabulary.encode(c) for c in group.chunks(values)]


def test_deterministic_under_a_seed_and_rng_changes_orders(dataset: StoreDataset, builder: SampleBuilder) -> None:
    sample = dataset[5]
    a, b = builder(sample, random.Random(7)), builder(sample, random.Random(7))
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key
    shuffled = [builder(sample, random.Random(s))["metadata"] for s in range(6)]
    assert len({tuple(map(tuple, c)) for c in shuffled}) > 1  # metadata chunk order is drawn
    assert all(sorted(map(tuple, c)) == sorted(map(tuple, shuffled[0])) for c in shuffled)


def test_masked_collated_batch_trains_a_tiny_fourm(
    registry: Registry, dataset: StoreDataset, builder: SampleBuilder
) -> None:
    info = KeyTable.from_registry(registry, PRESET, text_vocab_size=builder.vocabulary.size)
    collator = Collator(info)
    masker = FourMMasker(info, _mixture(list(info)))
    samples = [dataset[i] for i in (0, 9, 17, 30)]

    def batch():
        return builder.build_batch(samples, masker, collator, seeds=[11, 12, 13, 14])

    first, again = batch(), batch()
    assert first.batch_size == 4 and set(first.mod_dict) == set(info)
    for key in info:
        for name, tensor in first.mod_dict[key].items():
            assert torch.equal(tensor, again.mod_dict[key][name]), (key, name)
    assert first.num_encoder_tokens > 0 and first.num_decoder_tokens > 0
    torch.manual_seed(0)
    model = FourMNetwork(fourm_config(info, PRESET, dim=64, encoder_depth=1, decoder_depth=1, num_heads=2))
    loss, per_key = model(first.mod_dict, first.num_encoder_tokens, first.num_decoder_tokens)
    assert torch.isfinite(loss) and per_key
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_pixels_follow_the_crop_and_uncropped_reads_use_the_full_image(
    registry: Registry, store_path: Path, builder: SampleBuilder
) -> None:
    rgb_key, depth_key = registry.get("rgb").model_key(PRESET), registry.get("depth").model_key(PRESET)
    full = open_store_dataset(store_path, registry, crop=None)[4]
    assert full["depth"]["tokens"].ndim == 2 and "crop" not in full
    plain = builder(full)
    np.testing.assert_array_equal(plain[depth_key].numpy(), full["depth"]["tokens"][0])  # crop 0: the full image
    flipped = builder({**full, "crop": {"index": 0, "settings": np.array([0, 0, 64, 64, 1])}})
    torch.testing.assert_close(flipped[rgb_key], plain[rgb_key].flip(-1))
    cropped = builder({**full, "crop": {"index": 0, "settings": np.array([0, 0, 32, 32, 0])}})
    assert cropped[rgb_key].shape == plain[rgb_key].shape and not torch.equal(cropped[rgb_key], plain[rgb_key])
    torch.testing.assert_close(cropped[rgb_key][:, :2, :2].mean(), plain[rgb_key][:, :1, :1].mean(), atol=0.1, rtol=0)


def test_image_coordinates_follow_the_crop_or_are_left_out(
    registry: Registry, store_path: Path, builder: SampleBuilder
) -> None:
    sample = open_store_dataset(store_path, registry, crop=None).read(7, 0)
    full = builder(sample)
    assert {"det", "sam_instance", "human_poses"} & set(full)
    codec = registry.key_serializer("det", PRESET)
    boxes = sample["det"]["boxes"]
    flipped = builder({**sample, "crop": {"index": 1, "settings": np.array([0, 0, 64, 64, 1])}})
    expected = codec.serialize([{**b, "xmin": 1 - b["xmax"], "xmax": 1 - b["xmin"]} for b in boxes])
    assert builder.vocabulary.decode(flipped["det"][:-1].tolist()) == builder.vocabulary.decode(
        builder.vocabulary.encode(expected)
    )
    # spatial codecs without a crop transform are left out of cropped samples, never misaligned
    before = dict(builder.uncropped)
    cropped = builder({**sample, "crop": {"index": 1, "settings": np.array([8, 8, 40, 40, 0])}})
    for key in ("sam_instance", "human_poses"):
        if key in full:
            assert key not in cropped and builder.uncropped[key] == before.get(key, 0) + 1
    assert "caption" in cropped  # non-spatial sequences are untouched
    inside = codec.crop(boxes, [8, 8, 40, 40, 0], 64)
    assert all(0 <= b.xmin <= b.xmax <= 1 and 0 <= b.ymin <= b.ymax <= 1 for b in inside)
    assert len(inside) <= len(boxes)
