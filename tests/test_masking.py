"""4M masking sampler: budgets, Dirichlet statistics, disjointness, span/chunk structure, determinism, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fourm_core.data.masking import (
    FourMMasker,
    KeepScheme,
    KeyAlphas,
    MaskingMixture,
    MaskingStrategy,
    TokenRange,
    chunk_boundaries_to_chunks,
    load_mixture,
    merge_spans,
    span_mask,
)
from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.spec import MaskingUnit

# Neutral key names: the tests exercise the sampler, not any plugin.
LAYOUTS = {
    "img_a": KeyInfo.make("img_a", "image_tokens", 196),
    "img_b": KeyInfo.make("img_b", "image_tokens", 196),
    "glob": KeyInfo.make("glob", "global_tokens", 16),
    "pix": KeyInfo.make("pix", "pixels", 196),
    "tgt": KeyInfo.make("tgt", "image_tokens", 196, input=False),
    "seq": KeyInfo.make("seq", "sequence", 256),
    "meta": KeyInfo.make("meta", "sequence", 40, masking=MaskingUnit.CHUNK),
}


def mixture(alpha: float, keys=tuple(LAYOUTS), n_in: int = 128, n_tgt: int = 128, keep=KeepScheme.RANDOM):
    strategy = MaskingStrategy(alphas={k: KeyAlphas(input_alpha=alpha, target_alpha=alpha, keep=keep) for k in keys})
    return MaskingMixture(
        strategies=[strategy],
        input_tokens=TokenRange(low=n_in, high=n_in),
        target_tokens=TokenRange(low=n_tgt, high=n_tgt),
    )


def image_sample() -> dict[str, int]:
    return {"img_a": 196, "img_b": 196, "pix": 196, "tgt": 196}


def test_token_budgets_sum_and_masks_match_budgets() -> None:
    masker = FourMMasker(LAYOUTS, mixture(1.0))
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, inp, tgt, n_in, n_tgt = masker.budgets(image_sample(), rng)
        assert sum(inp.values()) == n_in  # caps never bind: every key has 196 tokens, budgets are 128
        assert sum(tgt.values()) <= n_tgt
    for _ in range(20):
        out = masker(image_sample(), rng)
        assert sum(int((~m.input_mask).sum()) for m in out.values()) == 128
        for m in out.values():
            assert int((~m.input_mask).sum()) == m.input_budget
            assert int((~m.target_mask).sum()) == m.target_budget
            assert not bool((~m.input_mask & ~m.target_mask).any())  # never both input and target


def test_target_budget_sums_when_inputs_leave_room() -> None:
    masker = FourMMasker(LAYOUTS, mixture(1.0, n_in=64, n_tgt=64))
    rng = np.random.default_rng(1)
    for _ in range(50):
        _, _, tgt, _, n_tgt = masker.budgets(image_sample(), rng)
        assert sum(tgt.values()) == n_tgt


@pytest.mark.parametrize("alpha", [0.5, 1.0, 10.0])
def test_dirichlet_share_means_and_variance(alpha: float) -> None:
    rng = np.random.default_rng(123)
    k, total, n = 4, 1000, 2000
    shares = np.stack([FourMMasker.split_budget(rng, np.full(k, alpha), total) / total for _ in range(n)])
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    # symmetric Dirichlet: mean 1/k, variance (1/k)(1-1/k)/(k*alpha+1); 6 standard errors cannot flake at a seed
    var = (1 / k) * (1 - 1 / k) / (k * alpha + 1)
    assert np.all(np.abs(shares.mean(axis=0) - 1 / k) < 6 * np.sqrt(var / n))
    assert abs(shares.var(axis=0).mean() - var) < 0.25 * var


def test_asymmetric_alphas_give_proportional_means() -> None:
    rng = np.random.default_rng(7)
    alphas = np.array([1.0, 2.0, 5.0])
    shares = np.stack([FourMMasker.split_budget(rng, alphas, 500) / 500 for _ in range(2000)])
    np.testing.assert_allclose(shares.mean(axis=0), alphas / alphas.sum(), atol=0.02)


def test_small_alpha_concentrates_budget() -> None:
    rng = np.random.default_rng(3)
    top = [FourMMasker.split_budget(rng, np.full(5, 0.01), 256).max() for _ in range(500)]
    # alpha 0.01: almost all mass on one key (sampled share of the largest key is >= 90% in ~95% of draws)
    assert np.mean(np.asarray(top) >= 230) > 0.8
    wide = [FourMMasker.split_budget(rng, np.full(5, 10.0), 256).max() for _ in range(500)]
    assert max(wide) < 200


def test_zero_alpha_keys_get_nothing() -> None:
    strategy = MaskingStrategy(
        alphas={"img_a": KeyAlphas(input_alpha=1000.0, target_alpha=0.0)}
        | {k: KeyAlphas(input_alpha=0.0, target_alpha=0.5) for k in ("img_b", "tgt")}
    )
    mix = MaskingMixture(strategies=[strategy], input_tokens=TokenRange(low=100, high=100))
    masker = FourMMasker(LAYOUTS, mix)
    for _ in range(20):
        _, inp, tgt, _, _ = masker.budgets(image_sample(), masker.rng)
        assert inp["img_a"] == 100 and inp["img_b"] == 0 and inp["pix"] == 0
        assert tgt["img_a"] == 0


def test_input_only_and_target_only_respected() -> None:
    masker = FourMMasker(LAYOUTS, mixture(0.3), seed=5)
    for _ in range(100):
        out = masker(image_sample())
        assert bool(out["pix"].target_mask.all())
        assert bool(out["tgt"].input_mask.all())


def test_empty_and_absent_keys_get_nothing() -> None:
    masker = FourMMasker(LAYOUTS, mixture(1.0), seed=2)
    for _ in range(20):
        out = masker({"img_a": 196, "img_b": 0, "seq": []})
        assert set(out) == {"img_a"}
        assert out["img_a"].input_budget == 128
    with pytest.raises(KeyError):
        masker({"unknown": 3})


def test_span_mask_worked_example() -> None:
    # reference §3.3: a b c d [EOS] with masks 0 1 1 0 1 -> a [S_1] d [S_2] / [S_1] b c [S_2] [EOS] [S_3]
    a, b, c, d, eos = 300, 301, 302, 303, 3
    inp, tgt = span_mask([[a], [b], [c], [d], [eos]], np.array([1, 0, 0, 1, 0], dtype=bool))
    assert inp == [a, 5, d, 6]
    assert tgt == [5, b, c, 6, eos, 7]
    assert merge_spans(inp, tgt) == [a, b, c, d, eos]
    assert span_mask([[a], [b]], np.ones(2, dtype=bool)) == ([a, b], [5])


def _sentinels(ids: torch.Tensor) -> list[int]:
    return [int(t) for t in ids if 4 <= int(t) < 204]


def test_sequence_span_structure_and_reconstruction() -> None:
    masker = FourMMasker(LAYOUTS, mixture(1.0, keys=("seq",), n_in=256, n_tgt=400), seed=11)
    seq = list(range(1000, 1060)) + [3]
    for _ in range(50):
        m = masker({"seq": seq})["seq"]
        assert m.input_ids is not None and m.target_ids is not None
        assert len(m.input_ids) <= m.input_budget
        s_in, s_tgt = _sentinels(m.input_ids), _sentinels(m.target_ids)
        assert s_in == list(range(5, 5 + len(s_in)))  # [S_1], [S_2], ... in order
        assert s_tgt == list(range(5, 6 + len(s_in)))  # plus the closing sentinel
        assert merge_spans(m.input_ids.tolist(), m.target_ids.tolist()) == seq


def test_sequence_input_fits_small_budget_and_target_window() -> None:
    strategy = MaskingStrategy(alphas={"seq": KeyAlphas(input_alpha=1.0, target_alpha=1.0, keep=KeepScheme.ALL)})
    mix = MaskingMixture(
        strategies=[strategy], input_tokens=TokenRange(low=10, high=10), target_tokens=TokenRange(low=8, high=8)
    )
    masker = FourMMasker(LAYOUTS, mix, seed=0)
    for _ in range(30):
        m = masker({"seq": list(range(1000, 1050))})["seq"]
        assert len(m.input_ids) <= 10
        assert len(m.target_ids) == 8
        assert 4 <= int(m.target_ids[0]) < 204  # the window starts at a sentinel


def test_chunk_masking_keeps_chunks_whole() -> None:
    chunks = [[500 + 10 * i + j for j in range(3)] for i in range(8)] + [[3]]
    masker = FourMMasker(LAYOUTS, mixture(1.0, keys=("meta",), n_in=20, n_tgt=64), seed=4)
    for _ in range(50):
        m = masker({"meta": chunks})["meta"]
        for ids in (m.input_ids, m.target_ids):
            plain = [int(t) for t in ids if not 4 <= int(t) < 204]
            groups = [plain[i : i + 1] for i in range(len(plain))]
            # every non-sentinel run splits into whole chunks
            runs, cur = [], []
            for t in ids.tolist():
                if 4 <= t < 204:
                    runs.append(cur)
                    cur = []
                else:
                    cur.append(t)
            runs.append(cur)
            whole = {tuple(c) for c in chunks}
            for run in runs:
                i = 0
                while i < len(run):
                    n = 1 if run[i] == 3 else 3
                    assert tuple(run[i : i + n]) in whole
                    i += n
            assert groups is not None
        assert merge_spans(m.input_ids.tolist(), m.target_ids.tolist()) == sum(chunks, [])


def test_chunks_from_boundaries_and_max_tokens() -> None:
    assert chunk_boundaries_to_chunks([1, 2, 3, 4, 5], [2, 4]) == [[1, 2], [3, 4], [5]]
    masker = FourMMasker(
        {"meta": KeyInfo.make("meta", "sequence", 7, masking=MaskingUnit.CHUNK)}, mixture(1.0, keys=("meta",)), seed=0
    )
    m = masker({"meta": [[10, 11, 12], [20, 21, 22], [30, 31]]})["meta"]
    assert len(m.target_ids) <= 7
    seen = {int(t) for t in torch.cat([m.input_ids, m.target_ids]) if not 4 <= int(t) < 204}
    assert seen <= {10, 11, 12, 20, 21, 22}  # the third chunk does not fit in 7 tokens: dropped whole


def test_deterministic_under_seed() -> None:
    sample = image_sample() | {"seq": list(range(1000, 1040)), "glob": 16}

    def run(seed: int):
        masker = FourMMasker(LAYOUTS, mixture(0.5), seed=seed)
        return [masker(sample) for _ in range(5)]

    a, b, c = run(9), run(9), run(10)
    flat = lambda rs: [t for r in rs for m in r.values() for t in (m.input_mask, m.target_mask)]  # noqa: E731
    assert all(torch.equal(x, y) for x, y in zip(flat(a), flat(b), strict=True))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(flat(a), flat(c), strict=False))


def test_strategy_choice_follows_weights() -> None:
    s = MaskingStrategy(alphas={"img_a": KeyAlphas(input_alpha=1.0, target_alpha=1.0)})
    mix = MaskingMixture(strategies=[s, s, s], weights=[1.0, 0.0, 3.0])
    masker = FourMMasker(LAYOUTS, mix, seed=0)
    picks = np.array([masker.budgets({"img_a": 196}, masker.rng)[0] for _ in range(2000)])
    assert not (picks == 1).any()
    assert abs((picks == 2).mean() - 0.75) < 0.05
    with pytest.raises(ValueError):
        MaskingMixture(strategies=[s], weights=[1.0, 2.0])


def test_own_format_roundtrip(tmp_path: Path) -> None:
    mix = mixture(0.5, keys=("img_a", "seq"), keep=KeepScheme.BINARY)
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(mix.model_dump(mode="json")))
    assert load_mixture(path) == mix
    official = tmp_path / "official.yaml"
    official.write_text("a:\n  input_alphas: [1.0, 0.0]\n  target_alphas: [0.5, 0.5]\n  keep: [all, binary]\n")
    loaded = load_mixture(official)
    assert loaded.weights is None and len(loaded.strategies) == 2
    assert loaded.strategies[1].alphas["a"].keep == KeepScheme.BINARY


def test_official_mixture_loads(fourm_ml4m_data: Path) -> None:
    path = fourm_ml4m_data / "mix_mod21_all2allmix_rgb2all_capT5bias.yaml"
    if not path.is_file():
        pytest.skip(f"official mixture not at {path}")
    mix = load_mixture(path)
    assert len(mix.strategies) == 7
    assert mix.weights == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    keep_all = [s for s in mix.strategies if any(a.keep == KeepScheme.ALL for a in s.alphas.values())]
    assert len(keep_all) == 2
    # usable on arbitrary layouts: every listed key as a token key
    layouts = {k: KeyInfo.make(k, "image_tokens", 196) for k in mix.keys()}
    out = FourMMasker(layouts, mix, seed=0)({k: 196 for k in layouts})
    assert sum(m.input_budget for m in out.values()) == 256


def test_masker_takes_the_registry_key_table() -> None:
    from fourm_core.registry import Registry

    reg = Registry(strict=False)
    table = KeyTable.from_registry(reg, "paper")
    assert set(table) == set(reg.model_keys())
    for key, members in reg.model_keys().items():
        assert table[key].masking == members[0].spec.masking
    masker = FourMMasker(table, mixture(1.0, keys=tuple(table)))
    # flags follow the key table: input-only keys (pixels, embeddings) never compete for targets
    for key, info in table.items():
        i = masker.keys.index(key)
        assert masker._target_ok[i] == (info.target and not info.is_embedding)
        assert masker._token_like[i] == (info.masking == MaskingUnit.TOKEN or info.is_embedding)


def test_sequence_without_input_budget_is_all_target() -> None:
    strategy = MaskingStrategy(alphas={"seq": KeyAlphas(input_alpha=1.0, target_alpha=1.0)})
    mix = MaskingMixture(
        strategies=[strategy], input_tokens=TokenRange(low=0, high=0), target_tokens=TokenRange(low=64, high=64)
    )
    m = FourMMasker(LAYOUTS, mix, seed=0)({"seq": [1000, 1001, 3]})["seq"]
    assert m.input_ids.tolist() == []
    assert m.target_ids.tolist() == [5, 1000, 1001, 3, 6]


def test_embedding_rows_cap_their_input_budget() -> None:
    layouts = {"emb": KeyInfo.make("emb", "sequence_embedding", 77, feature_dim=8), **LAYOUTS}
    masker = FourMMasker(layouts, mixture(10.0, keys=("emb", "img_a"), n_in=128, n_tgt=16), seed=3)
    for _ in range(20):
        out = masker({"emb": 5, "img_a": 196})
        assert out["emb"].input_budget <= 5 and int((~out["emb"].input_mask).sum()) == out["emb"].input_budget
        assert out["emb"].target_budget == 0


# -- budget redistribution (water-filling) ----------------------------------------------------------------------


def _random_sample(rng: np.random.Generator) -> dict:
    """Neutral keys with random presence and sizes: small token counts and short sequences make caps bind."""
    sample: dict = {}
    for key, layout in LAYOUTS.items():
        if rng.random() < 0.2:
            continue
        if layout.masking == MaskingUnit.TOKEN:
            sample[key] = int(rng.integers(1, layout.max_tokens + 1))
        elif layout.masking == MaskingUnit.SPAN:
            sample[key] = [*rng.integers(1000, 2000, size=int(rng.integers(1, 80))).tolist(), 3]
        else:
            sample[key] = [[500 + i, 600 + i] for i in range(int(rng.integers(1, 30)))] + [[3]]
    return sample


def _capacities(sample: dict) -> dict[str, int]:
    """What a key can hold: token count (capped at max_tokens), or a sequence's tokens after the max_tokens cut."""
    out = {}
    for key, content in sample.items():
        layout = LAYOUTS[key]
        if layout.masking == MaskingUnit.TOKEN:
            out[key] = min(content, layout.max_tokens)
        elif layout.masking == MaskingUnit.SPAN:
            out[key] = min(len(content), layout.max_tokens)
        else:
            total = 0
            for chunk in content:
                if total + len(chunk) > layout.max_tokens:
                    break
                total += len(chunk)
            out[key] = total
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.5, 5.0])
def test_redistributed_budgets_fill_up_to_capacity(alpha: float) -> None:
    masker = FourMMasker(LAYOUTS, mixture(alpha, n_in=200, n_tgt=200), seed=0)
    rng = np.random.default_rng(17)
    filled = 0
    for _ in range(400):
        sample = _random_sample(rng)
        if not sample:
            continue
        _, inp, tgt, n_in, n_tgt = masker.budgets(sample, masker.rng)
        cap = _capacities(sample)
        in_cap = sum(c for k, c in cap.items() if LAYOUTS[k].input)
        assert sum(inp.values()) == min(n_in, in_cap)
        tgt_cap = {
            k: c - inp[k] if LAYOUTS[k].masking == MaskingUnit.TOKEN else min(c + 2, LAYOUTS[k].max_tokens)
            for k, c in cap.items()
            if LAYOUTS[k].target
        }
        assert sum(tgt.values()) == min(n_tgt, sum(tgt_cap.values()))
        for k in sample:
            assert 0 <= inp[k] <= cap[k]
            assert 0 <= tgt[k] <= tgt_cap.get(k, 0)
        filled += sum(inp.values()) == n_in
    assert filled > 100  # the samples are not all too small to fill the budget


def test_without_redistribution_the_capped_budget_is_lost() -> None:
    """ml-4m behaviour (``redistribute=False``): caps cut budgets, and what they cut is gone."""
    old = FourMMasker(LAYOUTS, mixture(0.05, n_in=200, n_tgt=200), seed=0, redistribute=False)
    new = FourMMasker(LAYOUTS, mixture(0.05, n_in=200, n_tgt=200), seed=0)
    rng = np.random.default_rng(5)
    samples = [s for s in (_random_sample(rng) for _ in range(300)) if s]
    old_fill = np.mean([sum(old.budgets(s, old.rng)[1].values()) / 200 for s in samples])
    new_fill = np.mean([sum(new.budgets(s, new.rng)[1].values()) / 200 for s in samples])
    assert old_fill < 0.85 < new_fill


def test_zero_alpha_keys_never_receive_redistributed_budget() -> None:
    # only "glob" (16 tokens) has positive alphas: the rest of the budget has nowhere to go
    strategy = MaskingStrategy(
        alphas={
            "glob": KeyAlphas(input_alpha=1.0, target_alpha=1.0),
            "seq": KeyAlphas(input_alpha=0.0, target_alpha=2.0),
        }
    )
    mix = MaskingMixture(strategies=[strategy], input_tokens=TokenRange(low=64, high=64))
    masker = FourMMasker(LAYOUTS, mix, seed=1)
    for _ in range(200):
        sample = image_sample() | {"glob": 16, "seq": list(range(1000, 1030)) + [3]}
        _, inp, tgt, _, _ = masker.budgets(sample, masker.rng)
        assert inp["glob"] == 16  # capped, and its 48-token excess is not handed to alpha-0 keys
        assert all(v == 0 for k, v in inp.items() if k != "glob")
        assert {k for k, v in tgt.items() if v} <= {"seq"}  # glob is all input; the seq is the only target key
        assert tgt["seq"] == 33  # 31 tokens + 2 sentinels: its whole target


def test_rgb_to_all_style_strategy_keeps_zero_alpha_inputs_empty() -> None:
    """One key takes all input alpha (the rgb-to-all pattern), everything else has input alpha 0."""
    alphas = {"pix": KeyAlphas(input_alpha=1000.0, target_alpha=0.0)} | {
        k: KeyAlphas(input_alpha=0.0, target_alpha=0.5) for k in ("img_a", "img_b", "glob", "tgt")
    }
    mix = MaskingMixture(strategies=[MaskingStrategy(alphas=alphas)])  # 256 / 256 budgets
    masker = FourMMasker(LAYOUTS, mix, seed=2)
    for _ in range(100):
        out = masker(image_sample() | {"glob": 16})
        assert out["pix"].input_budget == 196  # capped; the 60 extra inputs are lost, not given to alpha-0 keys
        assert sum(m.input_budget for m in out.values()) == 196
        assert sum(m.target_budget for m in out.values()) == 256
        for key, m in out.items():
            assert int((~m.input_mask).sum()) == m.input_budget
            assert int((~m.target_mask).sum()) == m.target_budget
            assert not bool((~m.input_mask & ~m.target_mask).any())
            assert key != "pix" or bool(m.target_mask.all())


def test_budgets_deterministic_under_seed() -> None:
    rng = np.random.default_rng(3)
    samples = [s for s in (_random_sample(rng) for _ in range(50)) if s]

    def draw(seed: int) -> list:
        masker = FourMMasker(LAYOUTS, mixture(0.5), seed=seed)
        return [masker.budgets(s, masker.rng) for s in samples]

    assert draw(4) == draw(4)
    assert draw(4) != draw(5)


def test_split_budget_sums_exactly_and_zero_alpha_comes_last() -> None:
    rng = np.random.default_rng(8)
    for _ in range(500):
        alphas = rng.choice([0.0, 0.01, 0.5, 3.0], size=int(rng.integers(1, 12)))
        total = int(rng.integers(0, 400))
        budget = FourMMasker.split_budget(rng, alphas, total)
        assert budget.sum() == total and (budget >= 0).all()
        if (alphas > 0).any():
            assert budget[alphas == 0].sum() == 0


# -- the vectorised paths equal the reference ones --------------------------------------------------------------


def test_vectorised_span_masking_equals_reference() -> None:
    from fourm_core.data.masking.spans import _span_arrays

    rng = np.random.default_rng(0)
    for _ in range(300):
        lens = rng.integers(1, 4, size=int(rng.integers(1, 40)))
        units = [rng.integers(1000, 2000, size=n).tolist() for n in lens]
        keep = rng.random(len(units)) < rng.random()
        ids = np.array(sum(units, []), dtype=np.int64)
        ref = span_mask(units, keep)
        got = _span_arrays(ids, lens.astype(np.int64), keep)
        assert (got[0].tolist(), got[1].tolist()) == ref
        singles = [[t] for t in ids.tolist()]
        keep1 = rng.random(len(ids)) < 0.5
        got = _span_arrays(ids, None, keep1)
        assert (got[0].tolist(), got[1].tolist()) == span_mask(singles, keep1)


def _reference_keep(rng: np.random.Generator, units: list[list[int]], n_in: int, p: float) -> np.ndarray:
    """The loop ml-4m (and this module before vectorising) runs: redraw with p * 0.9 until the input fits."""
    while True:
        keep = rng.random(len(units)) <= p if p > 0 else np.zeros(len(units), dtype=bool)
        if len(span_mask(units, keep)[0]) <= n_in:
            return keep
        p = p * 0.9 if p > 1e-6 else 0.0


@pytest.mark.parametrize(("n_units", "chunk", "n_in", "p"), [(60, 1, 10, 0.8), (60, 1, 30, 0.5), (20, 3, 12, 1.0)])
def test_block_trials_have_the_reference_law(n_units: int, chunk: int, n_in: int, p: float) -> None:
    units = [[1000 + chunk * i + j for j in range(chunk)] for i in range(n_units)]
    ids = np.array(sum(units, []), dtype=np.int64)
    lens = None if chunk == 1 else np.full(n_units, chunk, dtype=np.int64)
    rng = np.random.default_rng(1)
    n = 3000
    fast = np.array([FourMMasker._fitting_keep(rng, lens, len(ids), n_in, p).sum() for _ in range(n)])
    ref = np.array([_reference_keep(rng, units, n_in, p).sum() for _ in range(n)])
    # kept units per accepted mask: same mean within 5 standard errors, similar spread
    se = np.sqrt(fast.var() / n + ref.var() / n)
    assert abs(fast.mean() - ref.mean()) < 5 * se + 1e-9
    assert abs(fast.std() - ref.std()) < 0.15 * ref.std() + 0.1
    for k in (FourMMasker._fitting_keep(rng, lens, len(ids), n_in, p) for _ in range(50)):
        inp, _ = span_mask(units, k)
        assert len(inp) <= n_in


def test_masked_key_takes_numpy_or_torch() -> None:
    from fourm_core.data.masking import MaskedKey

    a = MaskedKey(np.array([True, False]), torch.tensor([False, True]), 1, 1)
    assert isinstance(a.input_mask, torch.Tensor) and isinstance(a.target_mask, torch.Tensor)
    assert a.input_mask.tolist() == [True, False] and a.arrays()[1].tolist() == [False, True]
    seq = MaskedKey(None, None, 4, 3, np.array([10, 5, 11]), np.array([5, 12, 6]))
    assert seq.input_mask.tolist() == [False] * 3 and seq.target_ids.tolist() == [5, 12, 6]
