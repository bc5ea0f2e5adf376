"""Retrieval through predicted global embeddings: the usearch index against brute force, saving and stale-index
refusal, the decode path against the stored embeddings, model queries end to end and the ``fourm retrieve`` commands.

A 40-scene labelled synthetic store with a global-embedding modality, its tokenizer trained briefly and the store
pre-tokenised, and a random-init tiny FourMNetwork: the tests check mechanics and consistency, not retrieval quality.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from fourm_core.apps.cli.errors import run_reported
from fourm_core.apps.cli.retrieve import add_retrieve_commands
from fourm_core.data.pipeline import SampleBuilder, open_store_dataset
from fourm_core.inference.pipeline import Pipeline
from fourm_core.inference.queries import store_inputs, text_inputs
from fourm_core.inference.retrieval import (
    EmbeddingIndex,
    RetrievalError,
    StaleIndexError,
    build_index,
    predict_embedding,
    read_embeddings,
    retrieve,
)
from fourm_core.keys import KeyTable
from fourm_core.labeling.runner import label_store
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.storage.source_writer import create_source_store, write_source
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
from fourm_core.tokenizers.pretokenize import tokenize_store
from fourm_core.tokenizers.training import collect, fit
from fourm_core.vocab import TextVocabulary, build_text_vocabulary
from helpers import RANDOM_TEACHERS, cli_options

PRESET = "tiny"


def _queries(registry: Registry, vocabulary: TextVocabulary) -> Pipeline:
    """A pipeline without a network: enough to build query contents."""
    return Pipeline.create(None, registry, PRESET, vocabulary)


GLOBAL = "dinov2_global"
LABELLED = ["rgb", "caption", "dinov2", GLOBAL]
MODEL = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """40 labelled scenes with a global embedding, its tokenizer (trained briefly on all of them), the store
    pre-tokenised, a vocabulary and a random-init tiny FourMNetwork saved like a run's ``final/``."""
    root = tmp_path_factory.mktemp("retrieval")
    path = root / "w.zarr"
    source = SyntheticSource(40, 64, 5)
    write_source(create_source_store(path, source, 64, PRESET, 16), source)
    label_store(path, registry=registry, only=LABELLED, options=RANDOM_TEACHERS)
    store = AlignedStore.open(path, mode="r")
    config = config_from_spec(registry.get(GLOBAL).spec, PRESET).model_copy(update={"mlp_width": 128})
    tok = Tokenizer(config)
    split = collect(store, tok.config, registry, 0.2)
    fit(tok, split.train + split.held_out, TrainConfig(steps=200, max_seconds=None, batch_size=40, lr=3e-3, warmup=10))
    tok.info["trained"] = True
    tok.save_pretrained(root / "toks" / tok.name)
    tokenize_store(path, root / "toks", registry, only=[GLOBAL], crops=1, seed=0)
    texts = [row["text"] for b in range(store.n_blocks) for row in store.read_block("caption/raw", b) if row]
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(texts, words).save(root / "text_tokenizer.json")
    info = KeyTable.from_registry(registry, PRESET, text_vocab_size=TextVocabulary.load(vocab).size)
    torch.manual_seed(0)
    FourMNetwork(fourm_config(info, PRESET, **MODEL)).save_pretrained(root / "run" / "final")
    return {"root": root, "store": path, "toks": root / "toks", "vocab": vocab, "model": root / "run" / "final"}


@pytest.fixture(scope="module")
def tokenizer(world: dict[str, Path], registry: Registry) -> Tokenizer:
    return registry.tokenizer(GLOBAL, PRESET, world["toks"])


@pytest.fixture(scope="module")
def model(world: dict[str, Path]) -> FourMNetwork:
    return FourMNetwork.from_pretrained(world["model"]).eval()


def _query_options(world: dict[str, Path], model: Path, index: Path, store: Path) -> list[str]:
    """The options every ``fourm retrieve query`` needs: the world's tokenizers and vocabulary with the given model,
    index and store (the error tests swap each of those for a broken one)."""
    return cli_options(model=model, index=index, tokenizers=world["toks"], vocab=world["vocab"], store=store)


def brute_force(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ v.T.astype(np.float64)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(sims, order, axis=1)


# ---------------------------------------------------------------------------------------------- the index


def test_index_search_equals_brute_force_cosine() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 48)).astype(np.float32)
    ids = rng.permutation(10_000)[:500]
    queries = rng.normal(size=(20, 48)).astype(np.float32)
    index = EmbeddingIndex(48).build(vectors, ids)
    got_ids, got_sims = index.search(queries, 7)
    want_ids, want_sims = brute_force(vectors, ids, queries, 7)
    assert got_ids.shape == got_sims.shape == (20, 7)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_sims, want_sims, atol=1e-5)
    one_ids, one_sims = index.search(queries[3], 3)  # a single query gives 1-D arrays
    np.testing.assert_array_equal(one_ids, want_ids[3, :3])
    # k beyond the collection, zero vectors left out, bad queries refused
    small = EmbeddingIndex(4).build(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], np.float32), [5, 6, 7])
    assert len(small) == 2 and small.meta.skipped == 1
    assert small.search(np.array([1, 0.1, 0, 0]), 10)[0].tolist() == [5, 7]
    with pytest.raises(RetrievalError, match="zero"):
        small.search(np.zeros(4), 1)
    with pytest.raises(RetrievalError, match="unique"):
        EmbeddingIndex(4).build(np.ones((2, 4)), [1, 1])


def test_store_index_matches_brute_force_and_round_trips(
    world: dict[str, Path], registry: Registry, tmp_path: Path
) -> None:
    start = time.perf_counter()
    index = build_index(world["store"], GLOBAL, registry)
    built = time.perf_counter() - start
    _, ids, vectors = read_embeddings(AlignedStore.open(world["store"], mode="r"), f"{GLOBAL}/raw")
    assert index.meta.count == len(index) == 40 and index.dim == vectors.shape[1] == 768
    assert index.meta.key == registry.get(GLOBAL).model_key(PRESET)
    queries = vectors[:8] + np.random.default_rng(1).normal(scale=0.5, size=(8, 768)).astype(np.float32)
    start = time.perf_counter()
    got_ids, got_sims = index.search(queries, 5)
    searched = time.perf_counter() - start
    want_ids, want_sims = brute_force(vectors, ids, queries, 5)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_sims, want_sims, atol=1e-5)
    path = index.save(tmp_path / "ix" / "global.usearch")
    loaded = EmbeddingIndex.load(path)
    assert loaded.meta == index.meta
    again_ids, again_sims = loaded.search(queries, 5)
    np.testing.assert_array_equal(again_ids, got_ids)
    np.testing.assert_array_equal(again_sims, got_sims)
    loaded.check_store(world["store"])  # same data: accepted
    print(f"\n40-scene index: build {built * 1e3:.1f} ms, 8 queries {searched * 1e3:.2f} ms")


def test_an_index_of_changed_data_is_refused(world: dict[str, Path], registry: Registry, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(world["store"], copy)
    index = build_index(copy, GLOBAL, registry)
    index.check_store(copy)
    store = AlignedStore.open(copy, mode="r+")
    part = f"{GLOBAL}/raw"
    rows = store.read_block(part, 1)
    rows[3] = {"embedding": rows[3]["embedding"] * 1.0001}  # one value of one sample relabelled
    store.write_block(part, 1, rows)
    with pytest.raises(StaleIndexError, match="another version"):
        index.check_store(copy)
    with pytest.raises(StaleIndexError, match="another version"):  # the original store is not the copy either
        build_index(world["store"], GLOBAL, registry).check_store(copy)
    with pytest.raises(RetrievalError, match="no index"):
        EmbeddingIndex.load(tmp_path / "absent.usearch")


def test_only_global_modalities_with_a_tokenizer_are_indexed(world: dict[str, Path], registry: Registry) -> None:
    with pytest.raises(RetrievalError, match="not global_tokens"):
        build_index(world["store"], "caption", registry)
    with pytest.raises(RetrievalError, match="no modality"):
        build_index(world["store"], "dinov3_global", registry)
    with pytest.raises(RetrievalError, match="label"):
        build_index(world["store"], "imagebind_global", registry)  # not labelled in this store


# ---------------------------------------------------------------------------------------------- decoding


def test_true_tokens_decoded_land_next_to_their_own_scene(
    world: dict[str, Path], registry: Registry, tokenizer: Tokenizer
) -> None:
    """The index (stored embeddings) and the decode path (tokens -> tokenizer -> vector) are the same space: a scene's
    own stored tokens, decoded, are close to its stored embedding and find it among the first hits.

    Rank 1 cannot be required: the stand-in teachers put most scenes next to a near-duplicate (median nearest-neighbour
    cosine 0.99 on the 2,048-scene world), closer than the tokenizer's reconstruction error. A decode into another
    space, or ids paired with the wrong samples, fails the cosine and recall bounds below."""
    index = build_index(world["store"], GLOBAL, registry)
    store = AlignedStore.open(world["store"], mode="r")
    part = f"{GLOBAL}/tokens"
    tokens = np.stack([row["tokens"][0] for b in range(store.n_blocks) for row in store.read_block(part, b)])
    ids = torch.from_numpy(tokens.astype(np.int64))
    decoded = np.stack(tokenizer.decode_raw(ids))
    assert decoded.shape == (40, index.dim)
    _, stored_ids, stored = read_embeddings(store, f"{GLOBAL}/raw")
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    own = np.einsum("nd,nd->n", decoded / np.linalg.norm(decoded, axis=1, keepdims=True), unit)
    others = float((unit @ unit.T)[~np.eye(40, dtype=bool)].mean())
    found, _ = index.search(decoded, 5)
    top1, top5 = float((found[:, 0] == stored_ids).mean()), float((found == stored_ids[:, None]).any(axis=1).mean())
    print(
        f"\ndecoded true tokens: cosine to own {own.mean():.3f} (scenes among themselves {others:.3f}); "
        f"own scene at rank 1 {top1:.2f}, in top 5 {top5:.2f} (chance 0.03 / 0.13)"
    )
    assert own.mean() > 0.85 and own.mean() - others > 0.4
    assert top5 >= 0.45  # 0.65-0.82 over runs (the brief tokenizer fit is not bit-reproducible)


# ---------------------------------------------------------------------------------------------- the model


def test_text_and_store_inputs_match_the_training_contents(world: dict[str, Path], registry: Registry) -> None:
    vocabulary = TextVocabulary.load(world["vocab"])
    sample = open_store_dataset(world["store"], registry, crop=0)[4]
    trained = SampleBuilder(registry, PRESET, vocabulary)(sample)
    caption = AlignedStore.open(world["store"], mode="r").read("caption/raw", 4)["text"]
    assert torch.equal(
        text_inputs(_queries(registry, vocabulary), {"caption": caption})["caption"],
        trained["caption"],
    )
    picked = store_inputs(_queries(registry, vocabulary), world["store"], 4, ["rgb", "caption"])
    assert set(picked) == {"rgb@64", "caption"} and torch.equal(picked["rgb@64"], trained["rgb@64"])
    with pytest.raises(RetrievalError, match="neither"):
        text_inputs(_queries(registry, vocabulary), {"nope": "x"})
    with pytest.raises(RetrievalError, match="text sequence"):
        text_inputs(_queries(registry, vocabulary), {"rgb": "x"})


def test_predict_embedding_has_the_tokenizer_dimension(
    world: dict[str, Path], registry: Registry, model: FourMNetwork, tokenizer: Tokenizer
) -> None:
    key = registry.get(GLOBAL).model_key(PRESET)
    inputs = text_inputs(
        _queries(registry, TextVocabulary.load(world["vocab"])),
        {"caption": "a red car on a road."},
    )
    one = predict_embedding(model, inputs, key, tokenizer)
    assert one.shape == (tokenizer.config.channels,) == (768,) and one.dtype == np.float32
    again = predict_embedding(model, inputs, key, tokenizer)
    np.testing.assert_array_equal(one, again)  # temperature 0: deterministic
    several = predict_embedding(model, [inputs, inputs], key, tokenizer, {"num_steps": 2, "temperature": 1.0}, seed=3)
    assert several.shape == (2, 768)
    with pytest.raises(RetrievalError, match="not global_tokens"):
        predict_embedding(model, inputs, "caption", tokenizer)


def test_retrieve_end_to_end(
    world: dict[str, Path], registry: Registry, model: FourMNetwork, tokenizer: Tokenizer
) -> None:
    index = build_index(world["store"], GLOBAL, registry)
    vocabulary = TextVocabulary.load(world["vocab"])
    inputs = {
        **store_inputs(_queries(registry, vocabulary), world["store"], 7, ["rgb"]),
        **text_inputs(_queries(registry, vocabulary), {"caption": "two blue cubes in a room."}),
    }  # a multimodal query: another scene's pixels plus a caption
    start = time.perf_counter()
    hits = retrieve(model, inputs, index, tokenizer, k=5)
    seconds = time.perf_counter() - start
    assert len(hits) == 5 and [h.rank for h in hits] == list(range(5))
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True) and len({h.index for h in hits}) == 5
    query = predict_embedding(model, inputs, index.meta.key, tokenizer)
    _, ids, vectors = read_embeddings(AlignedStore.open(world["store"], mode="r"), f"{GLOBAL}/raw")
    want_ids, want_sims = brute_force(vectors, ids, query[None], 5)
    assert [h.index for h in hits] == want_ids[0].tolist()
    np.testing.assert_allclose(sims, want_sims[0], atol=1e-5)
    print(f"\nretrieve (predict + decode + search), dim-32 model: {seconds * 1e3:.1f} ms")


def test_api_retrieve_equals_the_library_path(
    world: dict[str, Path], registry: Registry, model: FourMNetwork, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    import fourm_core as fm

    path = build_index(world["store"], GLOBAL, registry).save(tmp_path / "world.usearch")
    api = fm.FourM.from_pretrained(
        world["root"] / "run", tokenizers=world["toks"], vocabulary=world["vocab"], registry=registry
    )
    caption = "two blue cubes in a room."
    hits = api.retrieve({"caption": caption}, index=path, k=5)
    vocabulary = TextVocabulary.load(world["vocab"])
    want = retrieve(
        model,
        text_inputs(_queries(registry, vocabulary), {"caption": caption}),
        EmbeddingIndex.load(path),
        tokenizer,
        k=5,
    )
    assert [h.index for h in hits] == [h.index for h in want] and len(hits) == 5
    assert [h.similarity for h in hits] == pytest.approx([h.similarity for h in want], abs=1e-6)
    no_tokenizers = fm.FourM.from_pretrained(world["model"], vocabulary=world["vocab"], registry=registry)
    with pytest.raises(FileNotFoundError, match="tokenizers="):
        no_tokenizers.retrieve({"caption": caption}, index=path)


# ---------------------------------------------------------------------------------------------- the commands


def run_cli(argv: list[str], registry: Registry) -> int:
    parser = argparse.ArgumentParser(prog="fourm")
    add_retrieve_commands(parser.add_subparsers(dest="command", required=True), Console(width=200))
    args = parser.parse_args(argv)
    return run_reported(lambda: int(args.func(args, registry=registry)), debug=False)  # as `fourm` ends


def test_cli_build_and_query(
    world: dict[str, Path], registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "global.usearch"
    assert (
        run_cli(
            ["retrieve", "build", "--store", str(world["store"]), "--modality", GLOBAL, "--out", str(out), "--json"],
            registry,
        )
        == 0
    )
    built = json.loads(capsys.readouterr().out)
    assert built["count"] == 40 and Path(built["sidecar"]).is_file()
    common = ["retrieve", "query", *_query_options(world, world["model"], out, world["store"]), "--k", "3"]
    assert run_cli([*common, "--text", "caption=a dog on the grass.", "--json"], registry) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"] == ["caption"] and len(result["hits"]) == 3
    assert all(h["text"] for h in result["hits"])  # the hits' captions are shown
    cosines = [h["cosine"] for h in result["hits"]]
    assert cosines == sorted(cosines, reverse=True)
    assert run_cli([*common, "--sample", "2", "--keys", "rgb,caption"], registry) == 0
    table = capsys.readouterr().out
    assert "cosine" in table and "caption, rgb@64" in table
    assert run_cli([*common, "--sample", "2", "--json"], registry) == 0  # every key the sample has but the target
    assert registry.get(GLOBAL).model_key(PRESET) not in json.loads(capsys.readouterr().out)["inputs"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modality": "caption"}, "not global_tokens"),
        ({"modality": "nope_global"}, "no modality"),
        ({"index": "absent.usearch"}, "no index"),
        ({"text": "nope=x"}, "neither a model key"),
        ({"text": None}, "no query"),
        ({"model": "absent"}, "no model"),
        ({"stale": True}, "another version"),
    ],
)
def test_cli_errors_before_compute(
    world: dict[str, Path],
    registry: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    message: str,
) -> None:
    store = world["store"]
    if change.get("stale"):
        store = tmp_path / "copy.zarr"
        shutil.copytree(world["store"], store)
    out = tmp_path / "ix.usearch"
    if "modality" in change:
        rc = run_cli(
            ["retrieve", "build", "--store", str(store), "--modality", change["modality"], "--out", str(out)], registry
        )
        assert rc == 2 and message in capsys.readouterr().err.replace("\n", " ")
        return
    assert run_cli(["retrieve", "build", "--store", str(store), "--modality", GLOBAL, "--out", str(out)], registry) == 0
    if change.get("stale"):
        other = AlignedStore.open(store, mode="r+")
        rows = other.read_block(f"{GLOBAL}/raw", 0)
        rows[0] = {"embedding": -rows[0]["embedding"]}
        other.write_block(f"{GLOBAL}/raw", 0, rows)
    capsys.readouterr()
    index = tmp_path / change["index"] if "index" in change else out
    model = tmp_path / change["model"] if "model" in change else world["model"]
    text = change.get("text", "caption=a cube.")
    argv = ["retrieve", "query", *_query_options(world, model, index, store)]
    if text:
        argv += ["--text", text]
    assert run_cli(argv, registry) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
