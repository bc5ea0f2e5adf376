"""Random per-key contents, shaped like what :class:`~fourm_core.data.pipeline.SampleBuilder` gives, for tests and
benchmarks of masking, collation and the model that need data for every model key without a store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fourm_core.data.masking import EOS_ID, NUM_SENTINELS, SENTINEL_BASE_ID
from fourm_core.keys import KeyInfo
from fourm_core.spec import MaskingUnit, ModalityKind

__all__ = ["FIRST_WORD_ID", "random_contents"]

#: first text-vocabulary id past ``[PAD]``, ``[EOS]`` and the sentinels
FIRST_WORD_ID = SENTINEL_BASE_ID + NUM_SENTINELS


def random_contents(
    keys: Mapping[str, KeyInfo],
    rng: np.random.Generator,
    *,
    min_sequence: int | None = 2,
    dict_tokens: float = 0.0,
) -> dict[str, Any]:
    """Data for every key of ``keys`` chosen by kind, never by name: normalised pixels, embedding rows, word-id
    chunks ending in ``[EOS]`` for chunk-masked sequences, word ids ending in ``[EOS]`` for the others (at least
    ``min_sequence`` long, ``None`` for half the maximum), int16 token grids as stores keep them (with probability
    ``dict_tokens`` in the loader's ``{"tokens": ...}`` form)."""
    sample: dict[str, Any] = {}
    for key, m in keys.items():
        kind, unit, n = m.kind, m.masking, m.max_tokens
        if kind == ModalityKind.PIXELS:
            s = int(m.image_size or 0)
            sample[key] = torch.from_numpy(rng.standard_normal((3, s, s)).astype(np.float32))
        elif kind == ModalityKind.SEQUENCE_EMBEDDING:
            rows = int(rng.integers(3, n + 1))
            sample[key] = rng.standard_normal((rows, int(m.feature_dim or 0))).astype(np.float32)
        elif kind == ModalityKind.SEQUENCE and unit == MaskingUnit.CHUNK:
            chunks, total = [], 1
            while True:
                chunk = rng.integers(FIRST_WORD_ID, int(m.vocab_size or 0), size=int(rng.integers(2, 5))).tolist()
                if total + len(chunk) > n:
                    break
                chunks.append(chunk)
                total += len(chunk)
            sample[key] = [*chunks, [EOS_ID]]
        elif kind == ModalityKind.SEQUENCE:
            length = int(rng.integers(n // 2 if min_sequence is None else min_sequence, n))
            sample[key] = [*rng.integers(FIRST_WORD_ID, int(m.vocab_size or 0), size=length - 1).tolist(), EOS_ID]
        else:
            tokens = rng.integers(0, int(m.vocab_size or 0), size=n).astype(np.int16)
            sample[key] = {"tokens": tokens} if dict_tokens and rng.random() < dict_tokens else tokens
    return sample
