"""``fourm generate`` and the request / output layer under it, on a small labelled synthetic store.

A random-init tiny network (rgb, depth, normal, caption, det keys), a depth tokenizer trained for 2 steps and a text
vocabulary from the store's captions: the tests check the plumbing (shapes, files, JSON, errors before compute),
not sample quality.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from fourm_core.apps.cli.errors import run_reported
from fourm_core.apps.cli.generate import add_generate_commands, parse_inputs
from fourm_core.data.masking import EOS_ID
from fourm_core.data.pipeline import SampleBuilder
from fourm_core.hookspecs import hookimpl
from fourm_core.inference import sampler as sampler_module
from fourm_core.inference.outputs import GenerationResult, jsonable, run_generation
from fourm_core.inference.pipeline import Pipeline
from fourm_core.inference.requests import GenerationRequestError, build_inputs, infer_preset, validate_targets
from fourm_core.inference.schedule import default_schedule
from fourm_core.keys import KeyTable
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.spec import ModalitySpec, grid_presets
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers import Tokenizer
from fourm_core.vocab import TextVocabulary
from helpers import EXAMPLE_PLUGIN, cli_options, small_world

PRESET = "tiny"
LABELLED = ["rgb", "depth", "caption", "det", "human_poses"]
MODEL_MODALITIES = ["rgb", "depth", "normal", "caption", "det"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    """40 labelled scenes, a depth tokenizer (2 steps), a vocabulary, a saved random-init model and a PNG."""
    built = small_world(tmp_path_factory.mktemp("generate"), registry, LABELLED, ["depth", "human_poses"], steps=2)
    root, vocab_path = built["root"], built["vocab"]
    store = AlignedStore.open(built["store"], mode="r")
    vocab = TextVocabulary.load(vocab_path)
    keys = {registry.get(name).model_key(PRESET) for name in MODEL_MODALITIES}
    info = KeyTable.from_registry(registry, PRESET, text_vocab_size=vocab.size, keys=keys)
    torch.manual_seed(0)
    model = FourMNetwork(fourm_config(info, "tiny", dim=32, encoder_depth=1, decoder_depth=1, num_heads=2))
    model.save_pretrained(root / "final")
    rgb = store.read("rgb/raw", 3)["rgb"]
    Image.fromarray(rgb).save(root / "photo.png")
    return {
        "root": root,
        "model": root / "final",
        "toks": root / "toks",
        "vocab_path": vocab_path,
        "vocab": vocab,
        "rgb": rgb,
        "depth": store.read("depth/raw", 3)["depth"],
        "photo": root / "photo.png",
        "store": built["store"],
    }


@pytest.fixture(scope="module")
def model(world: dict) -> FourMNetwork:
    return FourMNetwork.from_pretrained(world["model"]).eval()


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any sampler run or tokenizer encoding fails the test: request errors must come before both."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("compute started before the request was checked")

    monkeypatch.setattr(sampler_module.GenerationSampler, "generate", refuse)
    monkeypatch.setattr(Tokenizer, "encode", refuse)


def pipe(
    registry: Registry, model: FourMNetwork | None, world: dict, vocab: bool = True, toks: bool = True
) -> Pipeline:
    """The inference pipeline the library functions take (``model`` None: requests only, in the tiny preset)."""
    vocabulary = world["vocab"] if vocab else None
    return Pipeline.create(model, registry, PRESET, vocabulary, world["toks"] if toks else None)


def generate_one(registry: Registry, model: FourMNetwork, world: dict, inputs: dict, targets: list, **kw: object):  # noqa: ANN201
    """One sample through ``run_generation`` (which takes a batch)."""
    (result,) = run_generation(pipe(registry, model, world), [inputs], targets, **kw)
    return result


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``fourm generate ...`` through a parser of its own (cli.py wires the same function), ending as ``fourm``
    does (:func:`run_reported`: a user mistake is one line on stderr); returns the exit code and all it printed."""
    out, err = io.StringIO(), io.StringIO()
    parser = argparse.ArgumentParser(prog="fourm")
    add_generate_commands(parser.add_subparsers(dest="command", required=True), Console(file=out, width=200))
    args = parser.parse_args(argv)
    with contextlib.redirect_stderr(err):
        code = run_reported(lambda: args.func(args), debug=False)
    return code, out.getvalue() + err.getvalue()


# ---------------------------------------------------------------------------------------------- the command


def test_cli_writes_pictures_grid_and_json(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    options = cli_options(model=world["model"], tokenizers=world["toks"], vocab=world["vocab_path"])
    rc, printed = run_cli(
        ["generate", *options, *cli_options(input=f"rgb={world['photo']}", targets="depth,caption", out=out, steps=4)]
    )
    assert rc == 0, printed
    depth = np.asarray(Image.open(out / "depth.png"))
    assert depth.shape == (64, 64, 3) and depth.dtype == np.uint8
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] >= 128 and grid.shape[1] >= 2 * 128  # the input and the depth picture side by side
    record = json.loads((out / "outputs.json").read_text())
    targets = record["targets"]
    assert list(targets) == ["depth", "caption"]
    assert targets["depth"]["key"] == "tok_depth@64" and len(targets["depth"]["ids"]) == 64
    assert isinstance(targets["caption"]["text"], str) and "value" in targets["caption"]
    assert len(targets["caption"]["ids"]) <= 48
    # a caption that parses is drawn by its plugin (a random model may write reserved tokens, which do not parse)
    assert (out / "caption.png").exists() == (targets["caption"].get("parse_error") is None)
    assert "depth.png" in printed and "grid" in printed


def test_cli_request_errors_exit_2_with_the_modality_named(world: dict, tmp_path: Path, no_compute: None) -> None:
    options = cli_options(model=world["model"], tokenizers=world["toks"], input=f"rgb={world['photo']}")
    rc, printed = run_cli(["generate", *options, *cli_options(targets="normal", out=tmp_path / "x")])
    assert rc == 2 and "normal" in printed and "tokenizer" in printed
    assert not (tmp_path / "x").exists()


def test_parse_inputs() -> None:
    assert parse_inputs(["rgb=a.png", "caption=a = b"]) == {"rgb": "a.png", "caption": "a = b"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_inputs(["rgb"])


# ---------------------------------------------------------------------------------------------- the library


def test_run_generation_outputs(world: dict, model: FourMNetwork, registry: Registry, tmp_path: Path) -> None:
    def go(seed: int) -> GenerationResult:
        return generate_one(
            registry,
            model,
            world,
            {"rgb": world["rgb"]},
            ["depth", "caption"],
            seed=seed,
            steps=3,
            constrain=False,  # a random model's raw caption: reserved tokens, kept as text (constrained ones parse)
        )

    result = go(0)
    depth, caption = result["depth"], result["caption"]
    assert result["tok_depth@64"] is depth  # model keys work too
    assert depth.ids.shape == (64,) and depth.array.shape == (64, 64)
    picture = depth.picture()
    assert picture is not None and picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    assert caption.picture() is None and caption.ids.shape == (48,) and isinstance(caption.text, str)
    assert caption.array == caption.text or caption.parse_error is None
    assert depth.save(tmp_path / "d").suffix == ".png" and caption.save(tmp_path / "c").suffix == ".json"
    json.dumps(result.to_json())
    assert torch.equal(go(0)["depth"].ids, depth.ids)  # one seed, one result


def test_ensemble_fuses_decoded_generations(world: dict, model: FourMNetwork, registry: Registry) -> None:
    result = generate_one(
        registry,
        model,
        world,
        {"rgb": world["rgb"]},
        ["depth", "caption"],
        seed=3,
        steps=2,
        temperature=2.0,
        ensemble=5,
    )
    depth, caption = result["depth"], result["caption"]
    assert len(depth.samples) == 5 and len(caption.samples) == 5
    draws = np.stack([np.asarray(s.array, np.float64) for s in depth.samples])
    assert len({s.ids.numpy().tobytes() for s in depth.samples}) > 1  # five different draws at temperature 2
    np.testing.assert_allclose(depth.array, draws.mean(axis=0), rtol=1e-5, atol=1e-5)  # the mean of decoded maps
    assert depth.array.shape == (64, 64) and depth.picture() is not None
    texts = [s.text for s in caption.samples]
    assert texts.count(caption.text) == max(texts.count(t) for t in texts)  # the most frequent text
    record = result.to_json()["targets"]
    assert record["depth"]["ensemble"] == 5 and record["caption"]["sample_texts"] == texts
    # a plain generation is one draw, not an ensemble of one
    single = generate_one(registry, model, world, {"rgb": world["rgb"]}, ["depth"], seed=3, steps=2, temperature=2.0)
    assert single["depth"].samples == [] and single["depth"].ids.shape == (64,)
    with pytest.raises(GenerationRequestError, match="ensemble 0"):
        generate_one(registry, model, world, {"rgb": world["rgb"]}, ["depth"], ensemble=0)


def test_python_api_from_a_run_folder(world: dict, registry: Registry, model: FourMNetwork, tmp_path: Path) -> None:
    import fourm_core as fm
    from fourm_core.inference.api import ModelAssetsError

    # what `fourm train` leaves: final/ with the weights and fourm.json naming the vocabulary and the tokenizers
    run = tmp_path / "run"
    model.save_pretrained(run / "final")
    assets = {"vocabulary": str(world["vocab_path"]), "tokenizers": str(world["toks"]), "preset": PRESET}
    (run / "final" / "fourm.json").write_text(json.dumps(assets))
    api = fm.FourM.from_pretrained(run, registry=registry)
    assert api.preset == PRESET and api.tokenizers == str(world["toks"]) and api.vocabulary.size == world["vocab"].size
    out = api.generate({"rgb": world["rgb"]}, targets=["depth", "caption"], seed=0, steps=3)
    want = generate_one(registry, model, world, {"rgb": world["rgb"]}, ["depth", "caption"], seed=0, steps=3)
    assert torch.equal(out["depth"].ids, want["depth"].ids) and out["caption"].text == want["caption"].text
    assert out["depth"].array.shape == (64, 64) and out["depth"].save(tmp_path / "depth").is_file()
    image = out.show()  # no viewer here: the grid comes back
    assert image.size[0] >= 2 * 128 and np.asarray(image).std() > 0
    # the same folder without the sidecar: sequence targets need a vocabulary someone names
    (run / "final" / "fourm.json").unlink()
    bare = fm.FourM.from_pretrained(run / "final", tokenizers=world["toks"], registry=registry)
    with pytest.raises(GenerationRequestError, match="vocab"):
        bare.generate({"rgb": world["rgb"]}, targets=["caption"])
    with pytest.raises(ModelAssetsError, match="no config.json"):
        fm.FourM.from_pretrained(tmp_path / "nowhere")


def test_a_batch_gives_one_result_per_sample(world: dict, model: FourMNetwork, registry: Registry) -> None:
    import fourm_core as fm

    other = np.ascontiguousarray(world["rgb"][::-1])
    batch = [{"rgb": world["rgb"]}, {"rgb": other}]
    results = run_generation(pipe(registry, model, world), batch, ["depth", "caption"], steps=2, ensemble=2)
    assert len(results) == 2 and all(len(r["depth"].samples) == 2 and r["caption"].text is not None for r in results)
    assert not np.array_equal(results[0].inputs.pictures["rgb"], results[1].inputs.pictures["rgb"])
    api = fm.FourM(model, registry, PRESET, world["vocab"], world["toks"])
    listed = api.generate(batch, targets=["depth"], seed=1, steps=2)
    again = api.generate(batch, targets=["depth"], seed=1, steps=2)
    assert isinstance(listed, list) and len(listed) == 2
    assert all(torch.equal(a["depth"].ids, b["depth"].ids) for a, b in zip(listed, again))  # one seed, one batch
    with pytest.raises(GenerationRequestError, match="no samples"):
        run_generation(pipe(registry, model, world), [], ["depth"])


def test_parsed_sequences_are_drawn_by_their_plugin(world: dict, registry: Registry) -> None:
    from fourm_core.inference.outputs import decode_outputs
    from fourm_core.inference.requests import resolve

    vocab = world["vocab"]
    good = torch.tensor([[*vocab.encode("a red car on a road."), EOS_ID, 0, 0]])
    bad = torch.tensor([[*vocab.encode("a v1=3 car"), EOS_ID, 0, 0]])
    req = resolve(registry, PRESET, "caption")
    requests = pipe(registry, None, world, toks=False)
    drawn = decode_outputs(requests, {"caption": good}, [req], image=world["rgb"])["caption"]
    picture = drawn.picture()
    assert drawn.parse_error is None and picture is not None and picture.shape == (128, 128, 3)
    assert picture.min() < 100 and picture.max() == 255  # dark text on white
    unparsed = decode_outputs(requests, {"caption": bad}, [req])["caption"]
    assert unparsed.parse_error is not None and unparsed.picture() is None
    grid = np.asarray(GenerationResult({"caption": drawn}).grid_image())
    assert grid.shape[0] > 128 and (grid[20:148, 4:132] == picture).all()  # the drawn caption is a tile


def test_pixels_match_training_and_are_cropped(world: dict, registry: Registry) -> None:
    spec = registry.get("rgb").spec
    inputs = build_inputs(pipe(registry, None, world, toks=False), {"rgb": world["rgb"]})
    builder = SampleBuilder(registry, PRESET, world["vocab"])
    expected = builder._pixels(spec, builder.table["rgb@64"], {"rgb": world["rgb"]}, None)
    assert torch.allclose(inputs["rgb@64"], expected, atol=1e-6)
    wide = np.zeros((96, 160, 3), np.uint8)
    assert build_inputs(pipe(registry, None, world, vocab=False, toks=False), {"rgb": wide})["rgb@64"].shape == (
        3,
        64,
        64,
    )


def test_token_and_sequence_inputs(world: dict, registry: Registry) -> None:
    inputs = build_inputs(pipe(registry, None, world), {"depth": world["depth"], "caption": "a red car"})
    tok = registry.tokenizer("depth", PRESET, world["toks"])
    assert torch.equal(inputs["tok_depth@64"], tok.encode_raw([world["depth"]])[0])
    ids = inputs["caption"].tolist()
    assert ids[-1] == EOS_ID and world["vocab"].decode(ids[:-1]) == "a red car"
    assert "depth" in inputs.pictures and inputs.texts == {"caption": "a red car"}
    # values (not text) go through the key's serializer: boxes, and a member of a chunk-masked group
    boxes = registry.serializer("det").example(random.Random(0))
    meta = registry.serializer("metadata_image").example(random.Random(0))
    valued = build_inputs(pipe(registry, None, world, toks=False), {"det": boxes, "metadata_image": meta})
    assert valued["det"].tolist()[-1] == EOS_ID
    chunks = valued[registry.get("metadata_image").model_key(PRESET)]
    assert isinstance(chunks, list) and chunks[-1] == [EOS_ID] and len(chunks) > 2


def test_raw_people_are_item_tokenised_as_in_training(world: dict, registry: Registry) -> None:
    """A stored raw row of people (no tokens) goes through the item tokenizer, then the serializer: the same
    content ``fourm data tokenize`` + the training pipeline give that sample."""
    from fourm_core.data.pipeline import open_store_dataset
    from fourm_core.tokenizers.pretokenize import tokenize_store

    store = AlignedStore.open(world["store"], mode="r")
    index = next(i for i in range(store.n_samples) if (store.read("human_poses/raw", i) or {}).get("humans"))
    raw = store.read("human_poses/raw", index)
    inputs = build_inputs(pipe(registry, None, world), {"human_poses": raw})
    tokenize_store(world["store"], world["toks"], registry, only=["human_poses"], crops=1, seed=0)
    trained = SampleBuilder(registry, PRESET, world["vocab"])(open_store_dataset(world["store"], registry)[index])
    key = registry.get("human_poses").model_key(PRESET)
    assert torch.equal(torch.as_tensor(inputs[key]), torch.as_tensor(trained[key]))
    assert inputs.texts["human_poses"].startswith("human v0=")
    with pytest.raises(GenerationRequestError, match="human_poses: needs its trained tokenizer"):
        build_inputs(pipe(registry, None, world, toks=False), {"human_poses": raw})


def test_default_schedule(model: FourMNetwork) -> None:
    schedule = default_schedule(model.keys, ["tok_depth@64", "caption"], steps=100)
    assert [s.scheme for s in schedule.steps] == ["maskgit", "autoregressive"]
    assert schedule.steps[0].num_steps == 64  # at most one step per token


def test_infer_preset(model: FourMNetwork, registry: Registry) -> None:
    assert infer_preset(registry, model.keys) == PRESET
    with pytest.raises(GenerationRequestError, match="preset"):
        infer_preset(registry, model.keys, "paper")


def test_jsonable() -> None:
    assert jsonable({"a": np.float32(1.5), "b": (np.arange(2), torch.tensor([3]))}) == {"a": 1.5, "b": [[0, 1], [3]]}


# ---------------------------------------------------------------------------------------------- errors, before compute


class _TargetOnlyPlugin:
    """An in-process plugin with a target-only image modality (no built-in one is target-only)."""

    @hookimpl
    def fourm_register_modalities(self, register) -> None:  # noqa: ANN001
        register(
            ModalitySpec(
                name="probe_out",
                key="tok_probe_out",
                key_has_resolution=True,
                kind="image_tokens",
                embedding="2d",
                vocabulary="own",
                masking="token",
                presets=grid_presets(1024, 256),
                target_only=True,
            )
        )


@pytest.mark.parametrize(
    "inputs,targets,named,why",
    [
        ({"rgb": "photo"}, ["dpeth"], "dpeth", "unknown modality"),
        ({"rgb": "photo"}, ["rgb"], "rgb", "input-only"),
        ({"rgb": "photo"}, ["normal"], "normal", "no trained tokenizer"),
        ({"rgb": np.zeros((64, 64), np.uint8)}, ["depth"], "rgb", "shape"),
        ({"rgb": np.zeros((64, 64, 3), np.float32)}, ["depth"], "rgb", "uint8"),
        ({"rgb": "/no/such/photo.png"}, ["depth"], "rgb", "no file"),
        ({"rgb": "photo", "det": "not a det string"}, ["depth"], "det", "not a valid value"),
        ({"rgb": "photo"}, ["depth", "depth"], "depth", "already a target"),
        ({"rgb": "photo", "caption": "a car"}, ["caption"], "caption", "given as an input"),
    ],
)
def test_request_errors_come_before_compute(
    world: dict,
    model: FourMNetwork,
    registry: Registry,
    no_compute: None,
    inputs: dict,
    targets: list,
    named: str,
    why: str,
) -> None:
    inputs = {k: world["rgb"] if isinstance(v, str) and v == "photo" else v for k, v in inputs.items()}
    with pytest.raises(GenerationRequestError, match=why) as caught:
        generate_one(registry, model, world, inputs, targets)
    assert str(caught.value).startswith(named)


def test_target_only_input_and_input_only_target_are_refused(world: dict, model: FourMNetwork) -> None:
    extended = Registry(disabled={EXAMPLE_PLUGIN}, extra_plugins=[("probe_out", _TargetOnlyPlugin())])
    assert "probe_out" in extended
    with pytest.raises(GenerationRequestError, match="^probe_out: a target-only modality"):
        build_inputs(Pipeline.create(None, extended, PRESET), {"probe_out": np.zeros((64, 64), np.float32)})
    with pytest.raises(GenerationRequestError, match="^rgb: an input-only modality"):
        validate_targets(Pipeline.create(model, extended, PRESET, None, world["toks"]), ["rgb"])
