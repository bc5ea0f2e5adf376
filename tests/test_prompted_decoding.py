"""Prefix-conditioned decoding and box-prompted evaluation (issue 18 part 2): a given start of a sequence target is
teacher-forced and reproduced verbatim, the rest decoded within the grammar; a refused prefix is one line; the
box-prompted evaluation of a random tiny model gives finite scores, and with the true item codes forced as the whole
continuation it gives exactly the tokenizer bound (the metric pipeline proven end to end)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from fourm_core.apps.cli.generate import parse_prefixes
from fourm_core.evaluation import EvalConfig
from fourm_core.evaluation.common import held_out_split, input_contents
from fourm_core.evaluation.items import item_bound, task
from fourm_core.evaluation.prompted import evaluate_prompted, generate_prompts, prompts_of, score_prompted
from fourm_core.grammar import Grammar
from fourm_core.inference.constrain import sequence_grammars
from fourm_core.inference.outputs import run_generation
from fourm_core.inference.requests import GenerationRequestError
from fourm_core.plugin import code_token
from fourm_core.registry import Registry
from fourm_core.serialization_protocols import ItemPrompting
from fourm_core.storage.store import AlignedStore
from helpers import cli_options, random_model_api, small_world

PRESET = "tiny"
ITEMS = ["human_poses", "sam_instance"]
SAM = "point v0=30 v1=20 polygon v0=10 v1=12 v2=40 v3=50"
POSE = "human v0=100 v1=200 v2=600 v3=900 pose"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict:
    labelled = ["rgb", "caption", *ITEMS]
    built = small_world(tmp_path_factory.mktemp("prompted"), registry, labelled, ITEMS, steps=3, crops=1)
    return {**built, "model": random_model_api(registry, built, ["rgb", *ITEMS], PRESET)}


def picture(seed: int) -> dict[str, np.ndarray]:
    return {"rgb": np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)}


def starts(text: str, prefix: str) -> bool:
    """``text`` begins with the words of ``prefix`` (unconstrained, the model may stop right after it)."""
    return text.split()[: len(prefix.split())] == prefix.split()


@pytest.mark.parametrize("constrain", [True, False])
def test_a_prefix_is_reproduced_verbatim_and_the_rest_parses(world: dict, constrain: bool) -> None:
    pipe = world["model"].pipeline
    batch = [picture(0), picture(1), picture(2)]
    prefix = {"sam_instance": [SAM, None, "point v0=3 v1=4 none point v0=7 v1=8 polygon"], "human_poses": POSE}
    results = run_generation(pipe, batch, ITEMS, seed=0, temperature=1.0, constrain=constrain, prefix=prefix)
    assert starts(results[0]["sam_instance"].text, SAM)
    assert starts(results[2]["sam_instance"].text, "point v0=3 v1=4 none point v0=7 v1=8 polygon")
    assert all(starts(r["human_poses"].text, POSE) for r in results)
    if constrain:  # the grammar carried through the prefix: the continuation fits it and the whole parses
        assert all(r[n].parse_error is None for r in results for n in ITEMS)
        first = results[0]["sam_instance"].array[0].instances[0]
        assert first.bbox == (10, 12, 40, 50) and len(first.tokens) == 16
        assert results[1]["human_poses"].array[0].bbox == pytest.approx((100 / 999, 200 / 999, 600 / 999, 900 / 999))


def test_the_serializers_write_prompts_their_grammar_takes(world: dict, registry: Registry) -> None:
    """``item_prefix`` of a box: accepted as a prefix, and once the item's codes follow, the first parsed item has
    (up to quantisation) that box."""
    pipe = world["model"].pipeline
    vocab = pipe.vocabulary
    for name, n_codes in (("sam_instance", 16), ("human_poses", 8)):
        serializer = registry.serializer(name)
        assert isinstance(serializer, ItemPrompting)
        box = (0.1, 0.25, 0.5, 0.75)
        text = serializer.item_prefix(box, 64) + " " + " ".join(code_token(c) for c in range(n_codes))
        grammar = serializer.grammar(vocab)
        state = grammar.start()
        for token in vocab.encode(text):
            state = grammar.advance(state, token)  # never refused
        if name == "human_poses":
            text += " global " + " ".join(["v0=500"] * 9) + " camera v0=50 v0=50 v0=50 shape " + "v0=500 " * 10
        found = serializer.item_boxes(serializer.parse(text.strip()), 64)
        assert np.allclose(found[0][0], box, atol=1 / 64) and list(found[0][1]) == list(range(n_codes))


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ({"sam_instance": "point v0=3 v1=4 polygon v0=9 v1=1 v2=2"}, "prefix sam_instance: .* 'v2=2' at token 6"),
        ({"sam_instance": "human v0=1"}, "prefix sam_instance: .*does not allow 'human' at token 0"),
        ({"caption": "a dog"}, "prefix caption: only a sequence target being generated"),
        ({"sam_instance": [SAM, SAM]}, "prefix sam_instance: 2 prefixes for 1 samples"),
        ({"sam_instance": "v0=1 " * 400}, "prefix sam_instance: .*leave no room"),
    ],
)
def test_a_bad_prefix_is_one_line_naming_the_key(world: dict, prefix: dict, message: str) -> None:
    with pytest.raises(GenerationRequestError, match=message) as caught:
        run_generation(world["model"].pipeline, [picture(0)], ITEMS, prefix=prefix)
    assert "\n" not in str(caught.value)


def test_the_cli_reads_prefixes_and_refuses_malformed_ones() -> None:
    assert parse_prefixes(["sam_instance=point v0=1 v1=2", "human_poses=human"]) == {
        "sam_instance": "point v0=1 v1=2",
        "human_poses": "human",
    }
    for bad in (["sam_instance"], ["=x"], ["a=1", "a=2"]):
        with pytest.raises(GenerationRequestError):
            parse_prefixes(bad)


def test_box_prompted_evaluation_of_a_random_model_is_finite(world: dict) -> None:
    scores = evaluate_prompted(world["model"], world["store"], EvalConfig(samples=3, batch_size=8, targets=ITEMS))
    assert set(scores) == set(ITEMS)
    for name, result in scores.items():
        model = result["model"]
        assert model["items"] > 0, name
        assert model["parse_rate"] == 1.0 and model["decoded_rate"] == 1.0  # constrained: every prompt gives an item
        assert set(result["bound"]) <= set(model) and all(np.isfinite(v) for v in model.values())
    assert {"mask_ap", "mask_ap50", "mask_ap75"} <= set(scores["sam_instance"]["model"])  # the paper's prompted row
    assert 0.0 <= scores["sam_instance"]["model"]["mask_ap"] <= 1.0


@pytest.mark.parametrize("name", ITEMS)
def test_forcing_the_true_codes_scores_the_tokenizer_bound(world: dict, name: str) -> None:
    """The prompt plus the true item's codes as the whole forced continuation: the decoded items are the
    tokenizer's reconstruction, so every metric equals the bound."""
    pipe = world["model"].pipeline
    store = AlignedStore.open(world["store"], mode="r")
    config = EvalConfig(samples=4, batch_size=16)
    item_task, why = task(pipe, name, store, ["rgb"], config)
    assert item_task is not None, why
    held = held_out_split(store, config.samples)
    prompts, truths = prompts_of(item_task, store, held, input_contents(pipe, world["store"], held, ["rgb"]))
    assert prompts, f"no held-out {name} items"
    codes = item_task.tokenizer.encode_raw([p.item for p in prompts])
    for prompt, row in zip(prompts, codes, strict=True):
        prompt.prefix += " " + " ".join(code_token(int(c)) for c in row)
    ids = generate_prompts(pipe, item_task, prompts, config)
    scores = score_prompted(ids, prompts, item_task, pipe.vocabulary, store.image_size, truths)
    bound = item_bound(truths, item_task.tokenizer, item_task.evaluator, store.image_size)
    assert scores["decoded_rate"] == 1.0 and bound
    assert {k: scores[k] for k in bound} == pytest.approx(bound)
    # instances: box-prompted mask AP, which the bound has too (the same masks pasted into the same boxes)
    assert ("mask_ap" in bound) == (name == "sam_instance")


def test_forcing_the_models_own_start_gives_its_own_greedy_string(world: dict) -> None:
    """Greedy decoding, then again with its first ids forced: the same ids, so forced ids sit at the right positions
    of the decoder, with and without its key/value cache (that a prefix is not ignored is the verbatim test's)."""
    from fourm_core.inference.requests import build_inputs
    from fourm_core.inference.schedule import StepConfig

    pipe = world["model"].pipeline
    key = pipe.resolve("sam_instance").key
    rows = [dict(build_inputs(pipe, picture(seed))) for seed in (3, 4)]
    step = StepConfig(target=key, scheme="autoregressive", temperature=0.0)
    sampler = pipe.sampler(stop_ids=())  # no stop token: every row decodes its whole length, free to compare
    free = sampler.generate(rows, [step])[key]
    starts_of = [free[0, :5].tolist(), free[1, :40].tolist()]
    for use_cache in (True, False):
        forced = sampler.generate(rows, [step], prefixes={key: starts_of}, use_cache=use_cache)[key]
        assert torch.equal(forced, free), use_cache


def test_the_grammar_writes_only_codes_the_presets_item_tokenizer_has(world: dict, registry: Registry) -> None:
    """A tiny model's pose tokenizer has 256 codes of the format's 1024: the sampler's grammar allows only those."""
    pipe = world["model"].pipeline
    vocab = pipe.vocabulary
    head = vocab.encode("human v0=1 v1=2 v2=3 v3=4 pose")
    code_300, code_255 = vocab.encode("v0=300")[0], vocab.encode("v0=255")[0]

    def next_allowed(grammar: Grammar) -> np.ndarray:
        state = grammar.start()
        for token in head:
            state = grammar.advance(state, token)
        return grammar.allowed(state)

    serializer = registry.serializer("human_poses")
    for codebook, allowed in ((None, True), (1024, True), (256, False)):
        mask = next_allowed(serializer.grammar(vocab, codebook=codebook))
        assert bool(mask[code_300]) is allowed and mask[code_255]
    (tiny,) = sequence_grammars(pipe, [pipe.resolve("human_poses").key]).values()
    assert not next_allowed(tiny)[code_300] and next_allowed(tiny)[code_255]


def test_fourm_generate_takes_prefixes(world: dict, tmp_path: Path) -> None:
    """``fourm generate --prefix KEY=TEXT``: the text starts the target in outputs.json; a refused one exits 2 with
    one line naming the key."""
    from PIL import Image

    from fourm_core.apps.cli.errors import run_reported
    from fourm_core.apps.cli.generate import add_generate_commands

    folder = tmp_path / "final"
    world["model"].network.save_pretrained(folder)
    photo = tmp_path / "photo.png"
    Image.fromarray(picture(5)["rgb"]).save(photo)

    def run(prefix: str) -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="fourm")
        printed = io.StringIO()
        add_generate_commands(parser.add_subparsers(dest="command", required=True), Console(file=printed, width=200))
        argv = ["generate", *cli_options(model=folder, tokenizers=world["toks"], vocab=world["vocab"])]
        argv += [*cli_options(input=f"rgb={photo}", targets="sam_instance", out=tmp_path / "out", prefix=prefix)]
        args = parser.parse_args(argv)
        with contextlib.redirect_stderr(printed):
            code = run_reported(lambda: args.func(args), debug=False)
        return code, printed.getvalue()

    code, printed = run(f"sam_instance={SAM}")
    assert code == 0, printed
    text = json.loads((tmp_path / "out" / "outputs.json").read_text())["targets"]["sam_instance"]["text"]
    assert starts(text, SAM)
    code, printed = run("sam_instance=polygon v0=1")
    assert code == 2 and "prefix sam_instance: its format does not allow 'polygon' at token 0" in printed
