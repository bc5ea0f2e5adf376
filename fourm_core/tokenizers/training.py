"""Training and evaluating tokenizers on an aligned store: data collection, the training loop, the bound metrics.

Held-out samples are the last ``eval_fraction`` of the store's samples (by index, so the split is the same for every
tokenizer and for later model evaluation). For per-item tokenizers (poses, instance masks) every item of a sample
goes to that sample's side of the split.

Training runs where :class:`~fourm_core.devices.Placement` says (``fourm tokenizer train --device/--dtype``): the
modules and each batch on the device (batches through pinned memory on CUDA), the forward pass under autocast for
``bf16`` with the weights (the optimiser's master copy) in fp32. Batches, crops and diffusion noise are drawn on the
CPU from the seed, so a run draws the same batches on every device; the record says where and in which precision it
ran. The default is the CPU in fp32, which gives exactly the weights this module gave before it had a device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fourm_core.devices import Placement
from fourm_core.registry import Registry, resolve_ref
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers.config import TokenizerModelConfig, TrainConfig
from fourm_core.tokenizers.tokenizer import Tokenizer

__all__ = ["Split", "collect", "evaluate", "fit", "source_of"]


@dataclass
class Split:
    """Training and held-out items in stored form, with the sample each item came from."""

    train: list[np.ndarray] = field(default_factory=list)
    held_out: list[np.ndarray] = field(default_factory=list)
    train_samples: list[int] = field(default_factory=list)
    held_out_samples: list[int] = field(default_factory=list)


def source_of(config: TokenizerModelConfig, modality: str, registry: Registry) -> tuple[str, str | None]:
    """(modality, array) a tokenizer reads for ``modality``; the array is None for per-item tokenizers, which get
    the whole raw sample."""
    if config.source:
        return config.source
    if config.items:
        return modality, None
    spec = registry.get(modality).spec
    raw = [a.name for a in spec.storage if a.form == "raw"]
    if not raw:
        raise ValueError(f"modality {modality!r} stores no raw array and its tokenizer names no source")
    return modality, raw[0]


def item_function(config: TokenizerModelConfig) -> Callable[[dict[str, Any], int], np.ndarray] | None:
    """The plugin's item extractor (raw sample, item size) -> (N, ...) items, when the tokenizer is per item."""
    return resolve_ref(config.items) if config.items else None


def collect(store: AlignedStore, config: TokenizerModelConfig, registry: Registry, eval_fraction: float) -> Split:
    """Read every stored array (or item) the tokenizer is trained and evaluated on."""
    split = Split()
    cut = int(round(store.n_samples * (1 - eval_fraction)))
    items = item_function(config)
    for modality in config.modalities:
        part_modality, array = source_of(config, modality, registry)
        part = f"{part_modality}/raw"
        if part not in store.parts():
            raise ValueError(f"{store.url} has no {part!r}: label {part_modality!r} first (fourm data label)")
        for block in range(store.n_blocks):
            for index, row in zip(store.block_range(block), store.read_block(part, block), strict=True):
                if row is None:
                    continue
                found = list(items(row, config.input_size)) if items else [row[array]]
                side, where = (
                    (split.train, split.train_samples) if index < cut else (split.held_out, split.held_out_samples)
                )
                side.extend(found)
                where.extend([index] * len(found))
    if not split.train or not split.held_out:
        raise ValueError(
            f"tokenizer {config.name!r}: {len(split.train)} training and {len(split.held_out)} held-out items in "
            f"{store.url}; need some of each"
        )
    return split


def _schedule(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / max(cfg.warmup, 1)
        progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def fit(
    tok: Tokenizer,
    train: Sequence[np.ndarray],
    cfg: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Train ``tok`` on stored-form arrays; returns the training record saved in the tokenizer's info. With a
    ``placement`` (default: CPU, fp32) the tokenizer trains there and stays there (move it back with
    ``Placement().move(tok)``)."""
    place = placement or Placement()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if len(train) > cfg.max_items:
        train = [train[i] for i in sorted(rng.choice(len(train), cfg.max_items, replace=False))]
    tok.transform.fit(train)
    data = tok.transform.batch(train)
    place.move(tok)
    params = [p for m in tok.modules() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    ddpm = None
    if tok.diffusion is not None:
        from diffusers import DDPMScheduler

        ddpm = DDPMScheduler(**tok.scheduler_config())
    gen = torch.Generator().manual_seed(cfg.seed)
    for m in tok.modules():
        m.train()
    start, step, losses = time.perf_counter(), 0, {}
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=gen)
        x = place.put(data[idx])
        with place.autocast():
            quant, _, aux = tok.network.encode(x)
            out = tok.network.decode_quant(quant)
            recon = tok.transform.loss(out, x)
            loss = recon + aux
            if ddpm is not None:
                noise = place.put(torch.randn(x.shape, generator=gen))
                t = place.put(torch.randint(0, ddpm.config.num_train_timesteps, (len(x),), generator=gen))
                noisy = ddpm.add_noise(x, noise, t)
                pred = tok.diffusion(noisy, t, quant.detach(), out.detach())
                diff = tok.transform.loss(pred, x)
                loss = loss + diff
        losses = {"recon": recon.item(), "aux": float(aux.detach())}
        if ddpm is not None:
            losses["diffusion"] = diff.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if on_step is not None:
            on_step(step, losses)
        if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
            break
    seconds = time.perf_counter() - start
    tok.eval()
    record = {
        "trained": True,
        "steps": step,
        "seconds": round(seconds, 1),
        "items": len(train),
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "final_losses": losses,
        **place.record(),
    }
    tok.info = record
    return record


def _batched_ids(tok: Tokenizer, raws: Sequence[np.ndarray], batch: int = 256) -> torch.Tensor:
    return torch.cat([tok.encode_raw(raws[i : i + batch]) for i in range(0, len(raws), batch)])


def _batched_decode(tok: Tokenizer, ids: torch.Tensor, batch: int = 256, **kwargs: Any) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for i in range(0, len(ids), batch):
        out.extend(tok.decode_raw(ids[i : i + batch], **kwargs))
    return out


def codebook_usage(ids: torch.Tensor, vocab_size: int) -> dict[str, float]:
    """Perplexity of the token distribution and the share of the codebook used (collapse shows as both low)."""
    counts = torch.bincount(ids.reshape(-1), minlength=vocab_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": float(entropy.exp()), "codes_used": float((counts > 0).double().mean())}


def knn_agreement(bank: np.ndarray, true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """How well reconstructed embeddings retrieve like the originals: the share of queries whose nearest bank
    neighbour (cosine) is the same for truth and reconstruction (top-1), and whose true nearest neighbour is among
    the reconstruction's five nearest (recall@5).

    Exact search by one matrix product: for a few thousand vectors a nearest-neighbour library adds nothing."""

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)

    b = unit(bank.astype(np.float32))
    nn_true = (unit(true) @ b.T).argmax(1)
    scores = unit(pred) @ b.T
    top5 = np.argsort(-scores, axis=1)[:, :5]
    return {
        "knn_top1": float(np.mean(nn_true == scores.argmax(1))),
        "knn_recall5": float(np.mean((top5 == nn_true[:, None]).any(1))),
    }


def evaluate(tok: Tokenizer, split: Split, limit: int = 512, diffusion_limit: int = 64) -> dict[str, Any]:
    """The tokenizer bound on held-out items: metrics of the reconstruction, of the trivial baseline (training mean
    or majority), codebook usage, and for the diffusion family the diffusion decoder's metrics too."""
    truth = split.held_out[:limit]
    ids = _batched_ids(tok, truth)
    recon = _batched_decode(tok, ids)
    transform = tok.transform
    baseline = transform.baseline(split.train[:2000], len(truth))
    result: dict[str, Any] = {
        "items": len(truth),
        "bound": transform.metrics(truth, recon),
        "baseline": transform.metrics(truth, baseline),
        "usage": codebook_usage(ids, tok.vocab_size),
    }
    if tok.config.transform == "embedding":
        bank = np.stack([np.asarray(x, np.float32) for x in split.train[:4000]])
        t, p = np.stack(truth).astype(np.float32), np.stack(recon).astype(np.float32)
        mean = np.repeat(bank.mean(0, keepdims=True), len(t), 0)
        result["bound"].update(knn_agreement(bank, t, p))
        result["baseline"].update(knn_agreement(bank, t, mean))
    if tok.config.evaluator:
        extra = resolve_ref(tok.config.evaluator)
        result["bound"].update(extra(truth, recon))
        result["baseline"].update(extra(truth, baseline))
    if tok.diffusion is not None:
        n = min(diffusion_limit, len(truth))
        sampled = _batched_decode(tok, ids[:n], sampler="diffusion")
        result["diffusion"] = transform.metrics(truth[:n], sampled)
        result["plain_same_items"] = transform.metrics(truth[:n], recon[:n])
    return result
