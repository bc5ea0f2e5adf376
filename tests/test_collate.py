"""Collation into the official batch format: shapes, dtypes, sequence layout, budgets, a tiny network that trains."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fourm_core.data.collate import Collator, sequence_length
from fourm_core.data.masking import (
    NUM_SENTINELS,
    SENTINEL_BASE_ID,
    FourMMasker,
    KeyAlphas,
    MaskingMixture,
    MaskingStrategy,
    TokenRange,
    merge_spans,
)
from fourm_core.keys import KeyTable
from fourm_core.model import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.spec import MaskingUnit, ModalityKind
from fourm_core.testing.contents import random_contents

PRESET = "tiny"
TEXT_VOCAB = 1000
BATCH = 4
TINY = {"dim": 64, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def setup() -> tuple[KeyTable, KeyTable]:
    """(what the masker reads, what the collator reads): one key table since the key table replaced both."""
    table = KeyTable.from_registry(Registry(disabled={"albedo"}), PRESET, text_vocab_size=TEXT_VOCAB)
    return table, table


def random_sample(layouts: dict, info: dict, rng: np.random.Generator) -> dict:
    """Token data for every model key, as a loader would give it (token grids half the time in dict form)."""
    return random_contents(info, rng, dict_tokens=0.5)


def all_to_all(layouts: dict, n_in: int = 32, n_tgt: int = 32) -> MaskingMixture:
    alphas = {k: KeyAlphas(input_alpha=1.0, target_alpha=1.0) for k in layouts}
    return MaskingMixture(
        strategies=[MaskingStrategy(alphas=alphas)],
        input_tokens=TokenRange(low=n_in, high=n_in),
        target_tokens=TokenRange(low=n_tgt, high=n_tgt),
    )


def make_batch(layouts: dict, info: dict, seed: int, n_in: int = 32, n_tgt: int = 32):
    rng = np.random.default_rng(seed)
    collator = Collator(info)
    masker = FourMMasker(layouts, all_to_all(layouts, n_in, n_tgt), seed=seed)
    samples = [random_sample(layouts, info, rng) for _ in range(BATCH)]
    dropped = next(k for k, m in info.items() if m.kind == ModalityKind.IMAGE_TOKENS)
    del samples[0][dropped]  # an absent key becomes an empty entry
    masks = [masker(collator.masking_sample(s)) for s in samples]
    return collator, samples, masks, collator(samples, masks), dropped


def tiny_model(info: KeyTable) -> FourMNetwork:
    return FourMNetwork(fourm_config(info, "tiny", **TINY))


def test_shapes_dtypes_and_layouts(setup) -> None:
    layouts, info = setup
    collator, samples, masks, batch, dropped = make_batch(layouts, info, seed=0)
    assert list(batch.mod_dict) == list(info) and batch.batch_size == BATCH
    for key, d in batch.mod_dict.items():
        m, kind = info[key], info[key].kind
        n = sequence_length(m) if kind == ModalityKind.SEQUENCE else m.max_tokens
        assert set(d) == {"tensor", "input_mask", "target_mask", "decoder_attention_mask"}
        for name in ("input_mask", "target_mask"):
            assert d[name].shape == (BATCH, n) and d[name].dtype == torch.bool
        assert d["decoder_attention_mask"].shape == (BATCH, n) and d["decoder_attention_mask"].dtype == torch.int32
        if kind == ModalityKind.PIXELS:
            s = m.image_size
            assert d["tensor"].shape == (BATCH, 3, s, s) and d["tensor"].dtype == torch.float32
            assert torch.equal(d["tensor"][1], samples[1][key])
            assert d["target_mask"].all()
        elif kind == ModalityKind.SEQUENCE_EMBEDDING:
            assert d["tensor"].shape == (BATCH, n, m.feature_dim) and d["tensor"].dtype == torch.float32
            rows = samples[1][key].shape[0]
            assert torch.equal(d["tensor"][1, :rows], torch.from_numpy(samples[1][key]))
            assert not d["tensor"][1, rows:].any() and d["input_mask"][1, rows:].all()
            assert d["target_mask"].all()
        else:
            assert d["tensor"].shape == (BATCH, n) and d["tensor"].dtype == torch.long
            assert not ((~d["input_mask"]) & (~d["target_mask"])).any()  # never both input and target
        if kind in (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS):
            for b in range(BATCH):
                free = torch.nonzero(~d["target_mask"][b]).flatten()
                dam = d["decoder_attention_mask"][b]
                assert int(dam.sum()) == len(free)
                if len(free):
                    assert int(dam[free[0]]) == len(free)
    # the dropped key of sample 0: official empty entry
    empty = batch.mod_dict[dropped]
    assert empty["input_mask"][0].all() and empty["target_mask"][0].all()
    assert not empty["tensor"][0].any() and not empty["decoder_attention_mask"][0].any()


def test_sequence_layout_is_official(setup) -> None:
    layouts, info = setup
    _, samples, masks, batch, _ = make_batch(layouts, info, seed=1, n_in=512, n_tgt=512)
    checked = 0
    for key, m in info.items():
        if m.kind != ModalityKind.SEQUENCE:
            continue
        d = batch.mod_dict[key]
        for b in range(BATCH):
            mk = masks[b][key]
            ni, nt, start = len(mk.input_ids), len(mk.target_ids), mk.input_budget
            row = d["tensor"][b]
            assert torch.equal(row[:ni], mk.input_ids) and torch.equal(row[start : start + nt], mk.target_ids)
            used = torch.zeros_like(row, dtype=torch.bool)
            used[:ni] = True
            used[start : start + nt] = True
            assert not row[~used].any()  # pad id 0 everywhere else
            assert torch.equal(~d["input_mask"][b], torch.arange(len(row)) < ni)
            tgt = (torch.arange(len(row)) >= start) & (torch.arange(len(row)) < start + nt)
            assert torch.equal(~d["target_mask"][b], tgt)
            assert torch.equal(d["decoder_attention_mask"][b], tgt.to(torch.int32))
            if layouts[key].masking != MaskingUnit.SPAN or nt == 0 or ni == 0:
                continue
            inp, tgt = row[:ni].tolist(), row[start : start + nt].tolist()
            n_sentinels = sum(SENTINEL_BASE_ID <= t < SENTINEL_BASE_ID + NUM_SENTINELS for t in inp)
            in_target = [t for t in tgt if SENTINEL_BASE_ID <= t < SENTINEL_BASE_ID + NUM_SENTINELS]
            if in_target == list(range(SENTINEL_BASE_ID + 1, SENTINEL_BASE_ID + n_sentinels + 2)):  # not cut
                assert merge_spans(inp, tgt) == list(samples[b][key][: m.max_tokens])
                checked += 1
    assert checked > 0  # some span sequences were reassembled exactly from the collated batch


def test_visible_inputs_match_budgets(setup) -> None:
    layouts, info = setup
    collator, samples, masks, batch, _ = make_batch(layouts, info, seed=2)
    n_enc, n_dec = collator.token_counts(batch.mod_dict)
    assert batch.num_encoder_tokens == int(n_enc.max()) and batch.num_decoder_tokens == int(n_dec.max())
    assert int(n_enc.max()) <= 32
    for b in range(BATCH):
        expected = 0
        for key, mk in masks[b].items():
            visible = int((~batch.mod_dict[key]["input_mask"][b]).sum())
            if mk.input_ids is not None:  # span-masked sequences use at most their budget
                assert visible == len(mk.input_ids) <= mk.input_budget
            elif layouts[key].is_embedding:  # an embedding shorter than its budget shows every row
                assert visible == min(mk.input_budget, samples[b][key].shape[0])
            else:
                assert visible == mk.input_budget
            expected += visible
        assert int(n_enc[b]) == expected
    # token-only keys: budgets sum to the mixture's 32 exactly when no sequence competes
    token_keys = [k for k, lay in layouts.items() if lay.masking == MaskingUnit.TOKEN]
    sub = {k: layouts[k] for k in token_keys}
    masker = FourMMasker(sub, all_to_all(sub), seed=3)
    only = Collator({k: info[k] for k in token_keys})
    rng = np.random.default_rng(3)
    samples = [{k: v for k, v in random_sample(layouts, info, rng).items() if k in sub} for _ in range(BATCH)]
    batch = only(samples, [masker(only.masking_sample(s)) for s in samples])
    assert only.token_counts(batch.mod_dict)[0].tolist() == [32] * BATCH
    assert batch.num_encoder_tokens == 32
    fixed = Collator({k: info[k] for k in token_keys}, num_encoder_tokens=40, num_decoder_tokens=48)
    moved = fixed(samples, [masker(fixed.masking_sample(s)) for s in samples]).to("cpu")
    assert (moved.num_encoder_tokens, moved.num_decoder_tokens) == (40, 48)


def test_rejects_bad_data(setup) -> None:
    layouts, info = setup
    collator, samples, masks, _, _ = make_batch(layouts, info, seed=4)
    key = next(k for k, m in info.items() if m.kind == ModalityKind.IMAGE_TOKENS and k in masks[1])
    samples[1][key] = np.zeros(5, dtype=np.int16)
    with pytest.raises(ValueError, match="tokens, expected"):
        collator(samples, masks)


@pytest.fixture
def one_thread():
    """The tiny model is fastest on one thread; a busy shared machine makes the default pool crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_tiny_fourm_forward_backward_and_overfits(setup, one_thread) -> None:
    layouts, info = setup
    torch.manual_seed(0)
    random.seed(0)
    _, _, _, batch, _ = make_batch(layouts, info, seed=5)
    model = tiny_model(info)
    loss, per_mod = model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in per_mod.values())
    assert set(per_mod) == set(model.decoder_embeddings)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.encoder_embeddings[next(iter(info))].mod_emb.grad is not None

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss, _ = model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses
