"""Grammar-constrained decoding: every installed sequence plugin's grammar against its serializer (both ways), the
checks catching broken grammars, token budgets, and generation with a random tiny model: with constraints every
sequence target parses, without them far fewer do; ``--no-constrain`` reaches the sampler.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from fourm_core.apps.cli.errors import run_reported
from fourm_core.apps.cli.generate import add_generate_commands
from fourm_core.grammar import Choice, Grammar, GrammarError, Repeat, Seq, Tokens, vocab_index
from fourm_core.inference import sampler as sampler_module
from fourm_core.inference.outputs import run_generation
from fourm_core.inference.pipeline import Pipeline
from fourm_core.registry import Registry
from fourm_core.serialization import SerializationError, TokenCursor, value_token
from fourm_core.testing.checks import ConformanceError, conformance_vocabulary
from fourm_core.testing.conformance import test_grammar_meets_its_serializer  # noqa: F401  (parametrised)
from fourm_core.testing.grammar_conformance import check_grammar, check_serializer_grammar, random_walk
from fourm_core.vocab import TextVocabulary
from helpers import random_sequence_pipeline

#: every sequence target of the installed plugins (metadata_image stands for the group key ``metadata``)
TARGETS = ["caption", "det", "color_palette", "human_poses", "sam_instance", "metadata_image"]


@pytest.fixture(scope="module")
def vocab(registry: Registry) -> TextVocabulary:
    return conformance_vocabulary(registry)


@pytest.fixture(scope="module")
def pipe(registry: Registry, vocab: TextVocabulary) -> Pipeline:
    """A random-init dim-32 network over rgb and every sequence key (what a barely trained model writes)."""
    return random_sequence_pipeline(registry, vocab, ["rgb", *TARGETS])  # type: ignore[return-value]


def pictures(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)} for _ in range(n)]


# ---------------------------------------------------------------------------------------------- the contract


def test_every_installed_sequence_plugin_has_a_grammar_that_meets_its_serializer(
    registry: Registry, vocab: TextVocabulary
) -> None:
    checked = {m.name for m in registry.modalities() if check_grammar(m, registry, vocab)}
    metadata = {"metadata_image", "metadata_semantic", "metadata_geometric"}  # each alone and as the group
    assert {"caption", "det", "color_palette", "human_poses", "sam_instance", *metadata} <= checked


class Palette:
    """A toy one-slot format (``v1=n`` then n ``v0=`` values below 256) with a grammar that can be made wrong."""

    modality = "toy"

    def __init__(self, top: int = 255, sizes: tuple[int, ...] = (1, 2, 3)) -> None:
        self.top, self.sizes = top, sizes

    def serialize(self, value: list[int], rng: random.Random | None = None) -> str:
        return " ".join([value_token(1, len(value)), *(value_token(0, v) for v in value)])

    def parse(self, text: str) -> list[int]:
        cursor = TokenCursor(self.modality, text)
        values = cursor.values(0, cursor.value(1)[1])
        if not cursor.done() or any(v > 255 for v in values):
            raise SerializationError(self.modality, "bad palette")
        return values

    def example(self, rng: random.Random) -> list[int]:
        return [rng.randrange(256) for _ in range(rng.randint(1, 3))]

    def grammar(self, vocab: TextVocabulary) -> Grammar:
        index = vocab_index(vocab)
        value = Tokens(index.values(0, 0, self.top))
        alternatives = [Seq(Tokens(index.mask([index.value_token(1, n)])), Repeat(value, n, n)) for n in self.sizes]
        return Grammar(Choice(*alternatives), index)


def test_the_grammar_check_passes_a_right_grammar_and_catches_both_kinds_of_wrong_one(vocab: TextVocabulary) -> None:
    assert check_serializer_grammar(Palette(), vocab, 16, "[toy]")
    with pytest.raises(ConformanceError, match=r"\[toy\] the grammar allows a string that does not parse"):
        check_serializer_grammar(Palette(top=999), vocab, 16, "[toy]")  # allows v0=999, parse refuses it
    with pytest.raises(ConformanceError, match=r"\[toy\] the grammar refuses token 0 \('v1=3'\)"):
        check_serializer_grammar(Palette(sizes=(1, 2)), vocab, 16, "[toy]")  # the serializer writes 3 values


def test_a_grammar_is_a_state_machine_over_ids(registry: Registry, vocab: TextVocabulary) -> None:
    det = registry.get("det").serializer().grammar(vocab)
    ids = vocab.encode("v0=10 v1=20 v2=30 v3=40 teddy bear")
    assert det.rejects([*ids, vocab.eos_id]) is None
    state = det.start()
    assert det.accepts(state)  # no boxes is a det string too
    for token in ids[:2]:
        state = det.advance(state, token)
    allowed = np.flatnonzero(det.allowed(state))
    assert {vocab.decode([int(i)]) for i in allowed} == {f"v2={v}" for v in range(10, 1000)}  # v2 >= v0
    with pytest.raises(GrammarError):
        det.advance(state, vocab.token_to_id("v2=9"))
    assert det.rejects(vocab.encode("v0=10 v1=20 v2=30 v3=19 person")) == 3  # v3 < v1
    metadata = registry.key_serializer("metadata", "tiny").grammar(vocab)
    assert metadata.rejects(vocab.encode("v1=0 v0=5 v1=9 v0=3 v1=0 v0=6")) == 4  # a field once only
    palette = registry.get("color_palette").serializer().grammar(vocab)
    assert palette.rejects(vocab.encode("v1=2 v0=1 v0=2 v0=3")) == 4  # two colours announced, one given
    assert palette.rejects(vocab.encode("v1=1 v0=1 v0=2 v0=256")) == 3  # channels stop at 255


def test_the_budget_forces_a_string_that_ends_in_time(registry: Registry, vocab: TextVocabulary) -> None:
    palette = registry.get("color_palette").serializer().grammar(vocab)
    start = palette.start()
    only = [vocab.decode([int(i)]) for i in np.flatnonzero(palette.allowed(start, remaining=5))]
    assert only == ["v1=1"]  # one colour (4 ids) + [EOS] is all that fits in 5
    assert not palette.allowed(start, remaining=4).any()
    det = registry.get("det").serializer().grammar(vocab)
    assert det.allowed(det.start(), remaining=6)[vocab.token_to_id("v0=0")]  # 4 corners + a name + [EOS]
    assert np.flatnonzero(det.allowed(det.start(), remaining=5)).tolist() == [vocab.eos_id]
    for seed in range(20):  # a tight budget still ends with [EOS]
        ids, ended = random_walk(registry.get("human_poses").serializer().grammar(vocab), 40, random.Random(seed))
        assert ended and len(ids) < 40


# ---------------------------------------------------------------------------------------------- generation


def parse_rate(pipe: Pipeline, constrain: bool) -> dict[str, float]:
    results = run_generation(pipe, pictures(4), TARGETS, seed=0, temperature=1.0, constrain=constrain)
    return {name: float(np.mean([r[name].parse_error is None for r in results])) for name in TARGETS}


def test_constrained_generation_parses_for_every_sequence_target(pipe: Pipeline) -> None:
    constrained = parse_rate(pipe, True)
    assert constrained == dict.fromkeys(TARGETS, 1.0)
    unconstrained = parse_rate(pipe, False)
    assert np.mean(list(unconstrained.values())) <= 0.5, unconstrained  # what the mask is for
    assert sum(unconstrained.values()) < sum(constrained.values())


def test_batched_rows_keep_their_own_grammar_state(pipe: Pipeline, vocab: TextVocabulary) -> None:
    """Rows of one batch take different paths (palettes of different sizes end at different steps) and each still
    parses: the states are per row."""
    results = run_generation(pipe, pictures(6), ["det", "color_palette"], seed=1, temperature=1.0)
    assert all(r[name].parse_error is None for r in results for name in ("det", "color_palette"))
    sizes = {len(r["color_palette"].array) for r in results}
    assert len(sizes) > 1, sizes
    assert len({r["det"].text for r in results}) == len(results)


def test_no_constrain_reaches_the_sampler(
    pipe: Pipeline, vocab: TextVocabulary, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe.network.save_pretrained(tmp_path / "final")
    vocab.save(tmp_path / "vocab.json")
    Image.fromarray(pictures(1)[0]["rgb"]).save(tmp_path / "photo.png")
    seen: list[set[str]] = []
    init = sampler_module.GenerationSampler.__init__

    def spy(self, model, *args, grammars=None, **kwargs) -> None:
        seen.append(set(grammars or {}))
        init(self, model, *args, grammars=grammars, **kwargs)

    monkeypatch.setattr(sampler_module.GenerationSampler, "__init__", spy)
    base = ["generate", "--model", str(tmp_path / "final"), "--vocab", str(tmp_path / "vocab.json")]
    base += ["--input", f"rgb={tmp_path / 'photo.png'}", "--targets", "det,color_palette", "--out", str(tmp_path / "o")]
    for extra in ([], ["--no-constrain"]):
        parser = argparse.ArgumentParser(prog="fourm")
        add_generate_commands(parser.add_subparsers(dest="command", required=True), Console(file=io.StringIO()))
        args = parser.parse_args(base + extra)
        with contextlib.redirect_stderr(io.StringIO()):
            assert run_reported(lambda args=args: args.func(args), debug=False) == 0
    assert seen == [{"det", "color_palette"}, set()]
