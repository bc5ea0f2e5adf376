"""Per-item confidences (issue 18, AP with scores): the grammar tells which ids of a string are which item, the
sampler records the log-probability of every id it chose (the same with and without its key/value cache; NaN for
forced ids and padding), items get the geometric mean of their ids' probabilities, and COCO AP ranks by them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fourm_core.data.masking import EOS_ID, PAD_ID
from fourm_core.evaluation.coco import coco_ap
from fourm_core.evaluation.items import item_scores
from fourm_core.grammar import Grammar, Item, Repeat, Seq, Tokens, vocab_index
from fourm_core.inference.confidence import aligned_item_scores, item_confidences, sequence_confidence
from fourm_core.inference.constrain import sequence_grammars
from fourm_core.inference.outputs import run_generation
from fourm_core.inference.pipeline import Pipeline
from fourm_core.inference.requests import build_inputs
from fourm_core.inference.schedule import StepConfig
from fourm_core.plugin import code_token
from fourm_core.registry import Registry
from fourm_core.testing.checks import conformance_vocabulary
from fourm_core.vocab import TextVocabulary
from helpers import random_sequence_pipeline

ITEMS = ["det", "human_poses", "sam_instance"]  # (the pipeline also predicts caption)


@pytest.fixture(scope="module")
def vocab(registry: Registry) -> TextVocabulary:
    return conformance_vocabulary(registry)


@pytest.fixture(scope="module")
def pipe(registry: Registry, vocab: TextVocabulary) -> Pipeline:
    return random_sequence_pipeline(registry, vocab, ["rgb", "caption", *ITEMS])  # type: ignore[return-value]


def pictures(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"rgb": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)} for _ in range(n)]


def grammar_of(pipe: Pipeline, name: str) -> Grammar:
    return sequence_grammars(pipe, [pipe.resolve(name).key])[pipe.resolve(name).key]


# ------------------------------------------------------------------------------------------------ item spans


def test_item_spans_cover_each_written_item_and_nothing_else(pipe: Pipeline, vocab: TextVocabulary) -> None:
    det = "v0=1 v1=2 v2=30 v3=40 person v0=5 v1=6 v2=7 v3=8 traffic light"
    ids = vocab.encode(det)
    spans = grammar_of(pipe, "det").item_spans([*ids, EOS_ID])
    assert spans is not None and [vocab.decode(ids[a:b]) for a, b in spans] == [
        "v0=1 v1=2 v2=30 v3=40 person",
        "v0=5 v1=6 v2=7 v3=8 traffic light",
    ]
    # SAM: the query point's ids belong to no item, each polygon is one; "none" has no item
    codes = " ".join(code_token(c) for c in range(16))
    sam = (
        f"point v0=3 v1=4 polygon v0=1 v1=2 v2=9 v3=9 {codes} polygon v0=0 v1=0 v2=5 v3=5 {codes} point v0=1 v1=1 none"
    )
    ids = vocab.encode(sam)
    spans = grammar_of(pipe, "sam_instance").item_spans(ids)
    assert spans is not None and len(spans) == 2
    assert [vocab.decode(ids[a:b]).split()[:5] for a, b in spans] == [
        ["polygon", "v0=1", "v1=2", "v2=9", "v3=9"],
        ["polygon", "v0=0", "v1=0", "v2=5", "v3=5"],
    ]
    assert vocab.decode(ids[: spans[0][0]]) == "point v0=3 v1=4" and spans[0][1] == spans[1][0]
    assert grammar_of(pipe, "human_poses").item_spans(vocab.encode("none")) == []
    assert grammar_of(pipe, "det").item_spans(vocab.encode("v0=1 person")) is None  # refused: no reliable items


def test_consecutive_items_of_one_repeat_are_told_apart(vocab: TextVocabulary) -> None:
    index = vocab_index(vocab)
    value = Tokens(index.values(0, 0, 9))
    grammar = Grammar(Repeat(Item(Seq(value, value))), index)
    ids = [index.value_token(0, v) for v in (1, 2, 3, 4, 5, 6)]
    assert grammar.item_spans(ids) == [(0, 2), (2, 4), (4, 6)]
    assert Grammar(Repeat(Seq(value, value)), index).item_spans(ids) == []  # no Item: nothing to score
    assert grammar.has_items and not Grammar(Repeat(Seq(value, value)), index).has_items


# ----------------------------------------------------------------------------------------- scores of items


def test_an_items_confidence_is_the_geometric_mean_of_its_sampled_ids(vocab: TextVocabulary) -> None:
    index = vocab_index(vocab)
    value = Tokens(index.values(0, 0, 9))
    grammar = Grammar(Repeat(Item(Seq(value, value))), index)
    ids = [index.value_token(0, v) for v in (1, 2, 3, 4)] + [EOS_ID]
    logprobs = [math.log(0.5), math.log(0.5), float("nan"), math.log(0.25), math.log(0.9)]  # id 2 was forced
    found = item_confidences(grammar, ids, logprobs)
    assert found is not None and [c for _, c in found] == pytest.approx([0.5, 0.25])
    assert sequence_confidence(logprobs) == pytest.approx((0.5 * 0.5 * 0.25 * 0.9) ** 0.25)
    # a serializer that lists a repeated item once: merged at its first place with its best confidence
    twice = [((1, 2), 0.3), ((3, 4), 0.6), ((1, 2), 0.8)]
    assert aligned_item_scores(twice, 3) == [0.3, 0.6, 0.8]
    assert aligned_item_scores(twice, 2) == [0.8, 0.6]
    assert aligned_item_scores(twice, 5) is None
    # no grammar: every item shares the string's confidence
    whole = (0.5 * 0.5 * 0.25 * 0.9) ** 0.25
    assert item_scores(None, torch.tensor(ids), torch.tensor(logprobs), 2) == pytest.approx([whole, whole])
    assert item_scores(grammar, torch.tensor(ids), torch.tensor(logprobs), 2) == pytest.approx([0.5, 0.25])


def test_coco_ap_ranks_by_the_scores_given() -> None:
    # two true boxes, a hit and a false positive written first: constant scores give the "found last" curve
    truth = [[(0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 0.7, 0.7)]]
    hit, miss = (0.0, 0.0, 0.2, 0.2), (0.8, 0.0, 1.0, 0.1)
    assert coco_ap(truth, [[miss, hit]], 100)["box_ap"] == pytest.approx(0.5 * 51 / 101)
    assert coco_ap(truth, [[miss, hit]], 100, predicted_scores=[[0.1, 0.9]])["box_ap"] == pytest.approx(51 / 101)
    assert coco_ap(truth, [[miss, hit]], 100, predicted_scores=[[0.9, 0.1]])["box_ap"] == pytest.approx(25.5 / 101)
    with pytest.raises(ValueError, match="one score per predicted item"):
        coco_ap(truth, [[miss, hit]], 100, predicted_scores=[[0.5]])


# ------------------------------------------------------------------------------------------- the sampler


def test_the_sampler_records_each_sampled_ids_log_probability(pipe: Pipeline) -> None:
    key = pipe.resolve("sam_instance").key
    rows = [dict(build_inputs(pipe, p)) for p in pictures(3)]
    step = StepConfig(target=key, scheme="autoregressive", temperature=1.0)
    sampler = pipe.sampler(grammars=sequence_grammars(pipe, [key]))
    prefix = [[], pipe.vocabulary.encode("point v0=3 v1=4"), []]
    recorded: dict[str, torch.Tensor] = {}
    ids = sampler.generate(rows, [step], seed=3, prefixes={key: prefix}, logprobs=recorded)[key]
    logp = recorded[key]
    assert logp.shape == ids.shape
    assert torch.equal(torch.isnan(logp[0]), ids[0] == PAD_ID)  # a value exactly where an id was sampled
    assert torch.isnan(logp[1, :3]).all() and not torch.isnan(logp[1, 3]).any()  # forced ids carry none
    assert (logp[~torch.isnan(logp)] <= 0).all()
    # the key/value cache and the full recomputation give the same probabilities for the same draws
    again: dict[str, torch.Tensor] = {}
    same = sampler.generate(rows, [step], seed=3, prefixes={key: prefix}, logprobs=again, use_cache=False)[key]
    assert torch.equal(same, ids)
    torch.testing.assert_close(again[key], logp, equal_nan=True, atol=1e-4, rtol=1e-4)


def test_generated_sequences_carry_item_scores(pipe: Pipeline) -> None:
    results = run_generation(pipe, pictures(3), [*ITEMS, "caption"], seed=0, temperature=1.0)
    for result in results:
        for name in ITEMS:
            out = result[name]
            assert out.parse_error is None and out.confidence is not None and 0 < out.confidence <= 1
            assert out.item_scores is not None and all(0 < s <= 1 for s in out.item_scores)
            record = out.to_json()
            assert record["item_scores"] == [round(s, 6) for s in out.item_scores]
        assert len(result["det"].item_scores or []) == len(result["det"].array)
        assert result["caption"].item_scores is None and result["caption"].confidence is not None  # no items
        assert len(result["human_poses"].item_scores or []) == len(result["human_poses"].array)
