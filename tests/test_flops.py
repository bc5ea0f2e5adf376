"""Analytic FLOPs of the network (fourm_core.training.flops): a hand count on a tiny config and torch's FLOP counter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.model import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.spec import ModalityKind
from fourm_core.training.flops import (
    batch_forward_flops,
    forward_flops,
    measure_matmul_peak,
    target_tokens_per_key,
    train_flops,
    train_flops_from_counts,
)

HAND_INFO = KeyTable(
    [
        KeyInfo.make("px", "pixels", 4, image_size=8, patch_size=4, id=1),
        KeyInfo.make("grid", "image_tokens", 4, image_size=8, patch_size=4, vocab_size=32, id=2),
        KeyInfo.make("seq", "sequence", 6, vocab_size=50, id=3),
    ]
)


def test_hand_count_of_a_tiny_swiglu_model() -> None:
    model = FourMNetwork(
        fourm_config(HAND_INFO, "tiny", "swiglu_nobias", dim=16, encoder_depth=1, decoder_depth=2, num_heads=2)
    )
    B, N, M, D, H = 3, 10, 7, 16, int(2 * 64 / 3)  # SwiGLU hidden: int(2/3 * 4 * dim) = 42
    targets = {"grid": 5, "seq": 4}
    mlp = 3 * D * H
    enc_block = 2 * B * N * (3 * D * D + D * D + mlp)
    enc_attn = 2 * 2 * B * N * N * D
    dec_block = 2 * B * (M * (3 * D * D + D * D + D * D + D * D + mlp) + N * 2 * D * D)  # kv on the encoder side
    dec_attn = 2 * 2 * B * (M * M + M * N) * D
    patches = 2 * B * 4 * (4 * 4 * 3) * D  # 4 patches of 4x4x3 values, projected without bias
    context = 2 * B * N * D * D
    logits = 2 * D * (5 * 32 + 4 * 50)
    got = forward_flops(model, N, M, B, targets)
    assert got.embeddings == patches
    assert got.encoder_linear == enc_block and got.encoder_attention == enc_attn
    assert got.context_proj == context
    assert got.decoder_linear == 2 * dec_block and got.decoder_attention == 2 * dec_attn
    assert got.logits == logits
    assert got.total == patches + enc_block + enc_attn + context + 2 * (dec_block + dec_attn) + logits
    assert train_flops_from_counts(model, N, M, B, targets) == 3 * got.total


def test_gelu_counts_two_mlp_matrices() -> None:
    kw = {"dim": 16, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}
    gelu = FourMNetwork(fourm_config(HAND_INFO, "tiny", "gelu", **kw))
    swiglu = FourMNetwork(fourm_config(HAND_INFO, "tiny", "swiglu_nobias", **kw))
    N = 10
    assert forward_flops(gelu, N, 1, 1, {}).encoder_linear == 2 * N * (4 * 16 * 16 + 2 * 16 * 64)
    assert forward_flops(swiglu, N, 1, 1, {}).encoder_linear == 2 * N * (4 * 16 * 16 + 3 * 16 * 42)


def _batch(info: KeyTable, model: FourMNetwork, batch: int, gen: torch.Generator) -> SimpleNamespace:
    """Official-format batch: a quarter of each key visible as input, a quarter as target."""
    mod_dict = {}
    for key, m in info.items():
        n = 2 * (m.max_tokens + 1) if m.kind == ModalityKind.SEQUENCE else m.max_tokens
        if m.is_pixels:
            s = int(m.image_size or 0)
            tensor = torch.randn(batch, 3, s, s, generator=gen)
        elif m.is_embedding:
            tensor = torch.randn(batch, n, int(m.feature_dim or 0), generator=gen)
        else:
            tensor = torch.randint(0, int(m.vocab_size or 0), (batch, n), generator=gen)
        input_mask = torch.ones(batch, n, dtype=torch.bool)
        target_mask = torch.ones(batch, n, dtype=torch.bool)
        attn = torch.zeros(batch, n, dtype=torch.int32)
        input_mask[:, : n // 4] = False
        if m.target:
            target_mask[:, n // 2 : n // 2 + n // 4] = False
            if m.is_sequence:
                attn[:, n // 2 : n // 2 + n // 4] = 1
            else:
                attn[:, n // 2] = n // 4
        mod_dict[key] = {
            "tensor": tensor,
            "input_mask": input_mask,
            "target_mask": target_mask,
            "decoder_attention_mask": attn,
        }
    n_tgt = sum(int((~d["target_mask"][0]).sum()) for d in mod_dict.values())
    return SimpleNamespace(mod_dict=mod_dict, num_encoder_tokens=96, num_decoder_tokens=n_tgt + 8)


@pytest.fixture(scope="module")
def counted() -> tuple[FourMNetwork, SimpleNamespace]:
    info = KeyTable.from_registry(Registry(disabled={"albedo"}), "tiny", text_vocab_size=1000)
    torch.manual_seed(0)
    model = FourMNetwork(
        fourm_config(info, "tiny", "swiglu_nobias", dim=64, encoder_depth=2, decoder_depth=2, num_heads=2)
    )
    return model, _batch(info, model, 2, torch.Generator().manual_seed(0))


def test_flop_counter_agrees_on_a_real_forward(counted: tuple[FourMNetwork, SimpleNamespace]) -> None:
    """torch counts every mm / bmm the forward runs; the math attention backend shows attention as bmm (the CPU
    flash kernel has no FLOP formula in torch). The decoder budget leaves room for padding positions, which both
    count, while only real targets reach the logits in both."""
    model, batch = counted
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)
    measured = counter.get_total_flops()
    analytic = batch_forward_flops(model, batch).total
    assert analytic == pytest.approx(measured, rel=0.01)


def test_train_is_three_forwards_up_to_the_first_layers(counted: tuple[FourMNetwork, SimpleNamespace]) -> None:
    """torch's count of forward + backward comes in a little under 3x the forward: look-ups have no FLOPs either
    way, and the input projections (pixel patches) need no gradient for their inputs, only for their weights."""
    model, batch = counted
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss, _ = model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)
        loss.backward()
    measured = counter.get_total_flops()
    flops = batch_forward_flops(model, batch)
    assert train_flops(model, batch) == 3 * flops.total
    assert measured <= train_flops(model, batch) <= measured + flops.embeddings + 0.01 * measured


def test_target_counts_follow_the_decoder() -> None:
    model = FourMNetwork(fourm_config(HAND_INFO, "tiny", dim=16, encoder_depth=1, decoder_depth=1, num_heads=2))
    batch = _batch(HAND_INFO, model, 2, torch.Generator().manual_seed(0))
    counts = target_tokens_per_key(model, batch)
    # grid: 4 positions, targets at [2, 3); seq: 14 positions, targets at [7, 10) -> 2 decoded positions
    assert counts == {"grid": 2.0, "seq": 4.0}
    batch.num_decoder_tokens = 2  # 3 real targets per sample, 2 kept: scaled per key
    assert sum(target_tokens_per_key(model, batch).values()) == pytest.approx(4.0)


def test_matmul_peak_is_positive_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    assert measure_matmul_peak(1, sizes=(64,)) > 0
    assert torch.get_num_threads() == threads
