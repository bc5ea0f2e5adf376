"""Analytic model FLOPs of a :class:`~.model.network.FourMNetwork` step and the machine's measured matmul peak.

Convention (the one the MFU figures of the training log and ``benchmarks/bench_train.py`` use):

* a matmul of (m, k) by (k, n) costs ``2 * m * n * k`` FLOPs; biases, norms, activations, softmax, the loss and
  embedding look-ups are not counted (they are memory-bound and small next to the matmuls);
* every ``nn.Linear`` of the encoder / decoder blocks counts for every position the model runs it on: the full
  token budgets ``num_encoder_tokens`` (+ register tokens) and ``num_decoder_tokens``, padding included, since the
  model computes them (the hidden sizes are read from the modules, so SwiGLU's three matrices and GELU's two come
  out by themselves); the decoder's cross-attention ``kv`` projection runs on the encoder positions;
* attention counts its two matmuls, scores ``Q K^T`` and the weighted sum ``A V``: ``2 * 2 * N_q * N_kv * dim`` per
  layer and sample (``N_q = N_kv = N`` for self-attention, ``N_dec x N_enc`` for cross-attention);
* ``decoder_proj_context`` runs on the encoder positions; the input embeddings count their linear projections
  (pixel patches, continuous sequence rows) on every position they project, masked or not;
* output logits count ONLY the real target tokens, ``2 * tokens * dim * vocab`` of their key, because the model
  gathers those rows before ``to_logits`` (the official ml-4m model does the same);
* a training step costs 3x the forward (backward = input gradients + weight gradients, each as much as the
  forward); the small differences (no input gradient for the first projections, none for look-ups) are ignored.

``torch.utils.flop_counter.FlopCounterMode`` agrees with :func:`forward_flops` to well under 1% on a real forward
when attention runs through the math backend (tests/test_flops.py); the CPU flash kernel of
``scaled_dot_product_attention`` has no FLOP formula registered there, so under it the counter misses attention.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

#: A training step (forward + backward) in forward FLOPs.
TRAIN_MULTIPLIER = 3.0


@dataclass(frozen=True)
class FlopBreakdown:
    """Forward FLOPs of one batch, by part of the model (all in FLOPs, not GFLOPs)."""

    embeddings: float = 0.0
    encoder_linear: float = 0.0
    encoder_attention: float = 0.0
    context_proj: float = 0.0
    decoder_linear: float = 0.0
    decoder_attention: float = 0.0
    logits: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(getattr(self, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        return {**{f.name: float(getattr(self, f.name)) for f in fields(self)}, "total": self.total}


def _linear_macs(modules: Iterable[nn.Module]) -> int:
    """Multiply-accumulates per position of every ``nn.Linear`` in ``modules`` (in * out features)."""
    return sum(m.in_features * m.out_features for mod in modules for m in mod.modules() if isinstance(m, nn.Linear))


def _head_vocab(model: nn.Module, key: str) -> int:
    return int(model.decoder_embeddings[key].to_logits.out_features)


def _embedding_flops(model: nn.Module, positions_per_key: Mapping[str, int], batch_size: int) -> float:
    """Linear projections of the encoder embeddings (pixel patches, continuous rows) over all their positions."""
    total = 0
    for key, positions in positions_per_key.items():
        if key in model.encoder_embeddings:
            total += 2 * batch_size * positions * _linear_macs([model.encoder_embeddings[key]])
    return float(total)


def forward_flops(
    model: nn.Module,
    num_encoder_tokens: int,
    num_decoder_tokens: int,
    batch_size: int,
    target_tokens_per_key: Mapping[str, float] | None = None,
    embedding_positions_per_key: Mapping[str, int] | None = None,
) -> FlopBreakdown:
    """Forward FLOPs of ``model`` on a batch of ``batch_size`` with the given token budgets.

    ``target_tokens_per_key``: real target tokens per model key summed over the batch (what reaches the logits).
    ``None`` assumes every decoder position is a real target, spread evenly over the model's target keys.
    ``embedding_positions_per_key``: positions per sample each encoder embedding projects (pixel patches,
    continuous rows); ``None`` takes every input key with its ``max_tokens`` (every key present).
    """
    dim = int(model.dim)
    B = int(batch_size)
    n_enc = int(num_encoder_tokens) + int(getattr(model, "num_register_tokens", 0))
    n_dec = int(num_decoder_tokens)

    if embedding_positions_per_key is None:
        embedding_positions_per_key = {k: model.keys[k].max_tokens for k in model.encoder_embeddings}
    embeddings = _embedding_flops(model, embedding_positions_per_key, B)

    encoder_linear = encoder_attention = 0.0
    for block in model.encoder:
        encoder_linear += 2.0 * B * n_enc * _linear_macs([block])
        encoder_attention += 4.0 * B * n_enc * n_enc * dim
    context_proj = 2.0 * B * n_enc * _linear_macs([model.decoder_proj_context])

    decoder_linear = decoder_attention = 0.0
    for block in model.decoder:
        kv = _linear_macs([block.cross_attn.kv])
        decoder_linear += 2.0 * B * (n_dec * (_linear_macs([block]) - kv) + n_enc * kv)
        decoder_attention += 4.0 * B * (n_dec * n_dec + n_dec * n_enc) * dim

    if target_tokens_per_key is None:
        keys = list(model.decoder_embeddings)
        target_tokens_per_key = {k: B * n_dec / len(keys) for k in keys}
    logits = sum(2.0 * float(n) * dim * _head_vocab(model, k) for k, n in target_tokens_per_key.items())
    return FlopBreakdown(
        embeddings, encoder_linear, encoder_attention, context_proj, decoder_linear, decoder_attention, logits
    )


def target_tokens_per_key(model: nn.Module, batch: Any) -> dict[str, float]:
    """Real target tokens per model key of a collated batch, as the forward decodes them.

    A sequence of n targets decodes n - 1 positions (teacher forcing: position i predicts token i + 1), grids and
    globals one per ``~target_mask`` entry. A sample with more real targets than ``num_decoder_tokens`` keeps only
    that many; which keys lose them depends on the random modality order, so its keys are scaled proportionally.
    """
    counts: dict[str, torch.Tensor] = {}
    for key, d in batch.mod_dict.items():
        if key not in model.decoder_embeddings:
            continue
        tm = d["target_mask"]
        if model.keys[key].is_sequence:
            counts[key] = (~(tm[:, 1:] | tm[:, :-1])).sum(dim=1).double()
        else:
            counts[key] = (~tm).sum(dim=1).double()
    if not counts:
        return {}
    per_sample = torch.stack(list(counts.values())).sum(dim=0)
    scale = (float(batch.num_decoder_tokens) / per_sample.clamp(min=1.0)).clamp(max=1.0)
    return {k: float((c * scale).sum()) for k, c in counts.items()}


def batch_forward_flops(model: nn.Module, batch: Any) -> FlopBreakdown:
    """:func:`forward_flops` of a :class:`~fourm_core.data.collate.CollatedBatch` (anything with ``mod_dict``,
    ``num_encoder_tokens`` and ``num_decoder_tokens``): its budgets, real targets and embedded positions."""
    first = next(iter(batch.mod_dict.values()))
    positions = {k: int(d["input_mask"].shape[1]) for k, d in batch.mod_dict.items() if k in model.encoder_embeddings}
    return forward_flops(
        model,
        batch.num_encoder_tokens,
        batch.num_decoder_tokens,
        int(first["input_mask"].shape[0]),
        target_tokens_per_key(model, batch),
        positions,
    )


def train_flops(model: nn.Module, batch: Any) -> float:
    """Model FLOPs of one training micro-step (forward + backward) on ``batch``: 3x :func:`batch_forward_flops`."""
    return TRAIN_MULTIPLIER * batch_forward_flops(model, batch).total


def train_flops_from_counts(
    model: nn.Module,
    num_encoder_tokens: int,
    num_decoder_tokens: int,
    batch_size: int,
    target_tokens_per_key: Mapping[str, float] | None = None,
) -> float:
    """Model FLOPs of one training micro-step from token counts alone: 3x :func:`forward_flops`."""
    return (
        TRAIN_MULTIPLIER
        * forward_flops(model, num_encoder_tokens, num_decoder_tokens, batch_size, target_tokens_per_key).total
    )


def matmul_gflops(size: int, dtype: torch.dtype = torch.float32, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Median GFLOP/s of ``size`` x ``size`` matmuls in ``dtype`` (each timing loops to at least ``min_seconds``)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: thread pool, packing buffers
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            n += 1
            seconds = time.perf_counter() - start
            if seconds >= min_seconds:
                break
        rates.append(2.0 * size**3 * n / seconds / 1e9)
    return statistics.median(rates)


def measure_matmul_peak(
    threads: int | None = None, sizes: Iterable[int] = (512, 1024, 2048), dtype: torch.dtype = torch.float32
) -> float:
    """The dense matmul peak in GFLOP/s on ``threads`` threads: the best median over square ``sizes``.

    MFU divides by this measured figure rather than a datasheet number: a CPU's turbo, vector width and the BLAS
    in use decide what a matmul can reach, and MFU should say how close the model comes to that.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return max(matmul_gflops(s, dtype) for s in sizes)
    finally:
        torch.set_num_threads(previous)
