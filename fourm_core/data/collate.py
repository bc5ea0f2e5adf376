"""Collation: per-sample masker outputs plus the samples' data -> the official ml-4m batch that ``FourM`` takes.

Layouts follow the reference (``ml-4m.md`` §2.3, §3.1, §3.5), per model key of the key table:

* image / global tokens: ``tensor`` (B, max_tokens) int64 ids; ``input_mask`` / ``target_mask`` (B, max_tokens) bool
  (True = not used); ``decoder_attention_mask`` (B, max_tokens) int32 holding the number of targets at the first
  target position (full attention within the modality once the decoder compresses it);
* pixels: ``tensor`` (B, C, H, W) float32, masks (B, max_tokens) over the patches;
* sequences: length ``L = 2 * (max_tokens + 1)``; input ids (with sentinels) at ``[0, len(input))``, target ids at
  ``[input_budget, input_budget + len(target))`` with pad id 0 elsewhere, ``decoder_attention_mask`` 1 at every
  target position (causal attention);
* sequence embeddings: ``tensor`` (B, max_tokens, feature_dim) float32 with zero rows past the sample's rows,
  ``input_mask`` per row, ``target_mask`` all True.

A key absent from a sample (or from its masking) becomes the official empty entry: zero tensor, all masks True,
zero decoder attention mask, so every batch holds every model key with fixed shapes. Nothing here looks at a
modality's name: the kind, sizes and input/target flags come from each key's :class:`~fourm_core.keys.KeyInfo`
(:meth:`fourm_core.keys.KeyTable.from_registry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fourm_core.data.masking import PAD_ID, MaskedKey, SampleContent
from fourm_core.keys import KeyInfo, KeyTable
from fourm_core.spec import ModalityKind

#: Key a loader's per-modality dict uses for its token array (``StoreDataset`` with ``form="tokens"``).
TOKENS_FIELD = "tokens"


def sequence_length(info: KeyInfo) -> int:
    """Collated length of a sequence key: room for ``max_tokens`` inputs and ``max_tokens`` targets (+1 each)."""
    return 2 * (info.max_tokens + 1)


def collated_length(info: KeyInfo) -> int:
    """Positions a key has in a collated batch: :func:`sequence_length` for text sequences, else ``max_tokens``."""
    return sequence_length(info) if info.kind == ModalityKind.SEQUENCE else info.max_tokens


def _as_tensor(value: Any) -> torch.Tensor:
    """A sample's data for one key as a tensor; a loader's ``{"tokens": array}`` dict is unwrapped."""
    if isinstance(value, Mapping):
        if TOKENS_FIELD in value:
            value = value[TOKENS_FIELD]
        elif len(value) == 1:
            (value,) = value.values()
        else:
            raise ValueError(f"cannot tell which of {sorted(value)} holds the data")
    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))


@dataclass
class CollatedBatch:
    """``model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens)``."""

    mod_dict: dict[str, dict[str, torch.Tensor]]
    num_encoder_tokens: int
    num_decoder_tokens: int

    def to(self, device: torch.device | str) -> CollatedBatch:
        moved = {k: {n: t.to(device) for n, t in d.items()} for k, d in self.mod_dict.items()}
        return CollatedBatch(moved, self.num_encoder_tokens, self.num_decoder_tokens)

    @property
    def batch_size(self) -> int:
        return next(iter(self.mod_dict.values()))["input_mask"].shape[0]


class Collator:
    """Builds :class:`CollatedBatch` es over the model keys of ``keys`` (a :class:`~fourm_core.keys.KeyTable`, or
    anything :meth:`~fourm_core.keys.KeyTable.coerce` takes).

    ``num_encoder_tokens`` / ``num_decoder_tokens``: fixed counts (ml-4m passes its 256/256 budgets); ``None``
    uses the largest count of visible inputs / valid decoder positions in each batch, so nothing is cut.
    """

    def __init__(
        self,
        keys: KeyTable | Mapping[str, Any],
        *,
        num_encoder_tokens: int | None = None,
        num_decoder_tokens: int | None = None,
        pad_id: int = PAD_ID,
    ) -> None:
        self.keys = KeyTable.coerce(keys)
        self.num_encoder_tokens = num_encoder_tokens
        self.num_decoder_tokens = num_decoder_tokens
        self.pad_id = pad_id
        for key, info in self.keys.items():  # missing sizes fail here, not mid-batch
            if info.is_pixels and info.image_size is None:
                raise ValueError(f"{key}: a pixel key needs image_size")
            if info.is_embedding and info.feature_dim is None:
                raise ValueError(f"{key}: a sequence embedding key needs feature_dim")

    # -- masker input ---------------------------------------------------------------------------------------------
    def masking_sample(self, sample: Mapping[str, Any]) -> dict[str, SampleContent]:
        """What :class:`~fourm_core.data.masking.FourMMasker` takes for ``sample``: token counts for grids, globals,
        pixels and embeddings, the ids (or id chunks) themselves for sequences. Unknown keys are skipped."""
        out: dict[str, SampleContent] = {}
        for key, value in sample.items():
            info = self.keys.get(key)
            if info is None or value is None:
                continue
            if info.is_pixels:
                out[key] = info.max_tokens
            elif info.kind == ModalityKind.SEQUENCE:
                out[key] = value
            elif info.is_embedding:
                out[key] = int(_as_tensor(value).shape[0])
            else:
                out[key] = int(_as_tensor(value).numel())
        return out

    # -- per key --------------------------------------------------------------------------------------------------
    def _empty_tensor(self, info: KeyInfo) -> torch.Tensor:
        if info.is_pixels:
            s = int(info.image_size or 0)
            return torch.zeros(info.num_channels, s, s, dtype=torch.float32)
        if info.is_embedding:
            return torch.zeros(info.max_tokens, int(info.feature_dim or 0), dtype=torch.float32)
        return torch.full((collated_length(info),), self.pad_id, dtype=torch.long)

    def _one(
        self, key: str, info: KeyInfo, data: Any, masked: MaskedKey | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tensor, input_mask, target_mask, decoder_attention_mask) of one sample for one key."""
        kind, n = info.kind, collated_length(info)
        input_mask = torch.ones(n, dtype=torch.bool)
        target_mask = torch.ones(n, dtype=torch.bool)
        attn = torch.zeros(n, dtype=torch.int32)
        tensor = self._empty_tensor(info)
        if masked is None:
            return tensor, input_mask, target_mask, attn

        if kind == ModalityKind.SEQUENCE:
            if masked.input_ids is None or masked.target_ids is None:
                raise ValueError(f"{key}: a sequence key needs span-masked input_ids / target_ids")
            inp, tgt = masked.input_ids.long(), masked.target_ids.long()
            start = int(masked.input_budget)
            if len(inp) > start:
                raise ValueError(f"{key}: {len(inp)} input ids exceed the input budget {start}")
            if start + len(tgt) > n:
                raise ValueError(f"{key}: input budget {start} + {len(tgt)} target ids exceed length {n}")
            tensor[: len(inp)] = inp
            tensor[start : start + len(tgt)] = tgt
            input_mask[: len(inp)] = False
            target_mask[start : start + len(tgt)] = False
            attn[start : start + len(tgt)] = 1
            return tensor, input_mask, target_mask, attn

        if data is None:
            raise ValueError(f"{key}: masked but the sample has no data for it")
        value = _as_tensor(data)
        if info.is_embedding:
            rows = value.reshape(value.shape[0], -1).to(torch.float32)
            if rows.shape[0] > n or rows.shape[1] != tensor.shape[1]:
                raise ValueError(f"{key}: embedding of shape {tuple(rows.shape)} does not fit {tuple(tensor.shape)}")
            tensor[: rows.shape[0]] = rows
        elif info.is_pixels:
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"{key}: pixels of shape {tuple(value.shape)}, expected {tuple(tensor.shape)}")
            tensor = value.to(torch.float32)
        else:
            ids = value.reshape(-1).long()
            if ids.numel() != n:
                raise ValueError(f"{key}: {ids.numel()} tokens, expected {n}")
            tensor = ids
        m = len(masked.input_mask)
        if m > n or len(masked.target_mask) != m:
            raise ValueError(f"{key}: masks of length {m}/{len(masked.target_mask)} for {n} positions")
        input_mask[:m] = masked.input_mask.bool()
        target_mask[:m] = masked.target_mask.bool()
        if info.is_tokens and info.target:  # image and global tokens (sequences returned above)
            free = torch.nonzero(~target_mask).flatten()
            if len(free):
                attn[free[0]] = len(free)  # full attention among this key's targets
        return tensor, input_mask, target_mask, attn

    # -- batch ----------------------------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Mapping[str, Any]], masks: Sequence[Mapping[str, MaskedKey]]) -> CollatedBatch:
        """Stack ``samples`` (per key: token array, pixels, embedding rows, or anything for sequences) masked by
        ``masks`` (the masker's output per sample) into one batch holding every key of the key table."""
        if len(samples) != len(masks) or not samples:
            raise ValueError(f"{len(samples)} samples for {len(masks)} maskings")
        unknown = set().union(*masks) - set(self.keys)
        if unknown:
            raise KeyError(f"maskings have keys the key table does not know: {sorted(unknown)}")
        mod_dict: dict[str, dict[str, torch.Tensor]] = {}
        for key, info in self.keys.items():
            parts = [self._one(key, info, s.get(key), m.get(key)) for s, m in zip(samples, masks)]
            tensor, input_mask, target_mask, attn = (torch.stack(p) for p in zip(*parts))
            if not info.input:
                input_mask = torch.ones_like(input_mask)
            if not info.target:
                target_mask = torch.ones_like(target_mask)
                attn = torch.zeros_like(attn)
            mod_dict[key] = {
                "tensor": tensor,
                "input_mask": input_mask,
                "target_mask": target_mask,
                "decoder_attention_mask": attn,
            }
        n_enc, n_dec = self.token_counts(mod_dict)
        return CollatedBatch(
            mod_dict,
            self.num_encoder_tokens if self.num_encoder_tokens is not None else max(1, int(n_enc.max())),
            self.num_decoder_tokens if self.num_decoder_tokens is not None else max(1, int(n_dec.max())),
        )

    def token_counts(self, mod_dict: Mapping[str, Mapping[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: visible encoder inputs and valid decoder positions (a sequence of n targets decodes n - 1
        positions under teacher forcing), over the input / target keys of the key table."""
        first = next(iter(mod_dict.values()))["input_mask"]
        n_enc = torch.zeros(first.shape[0], dtype=torch.long)
        n_dec = torch.zeros_like(n_enc)
        for key, d in mod_dict.items():
            info = self.keys[key]
            if info.input:
                n_enc += (~d["input_mask"]).sum(dim=1)
            if info.target:
                tm = d["target_mask"]
                if info.kind == ModalityKind.SEQUENCE:
                    n_dec += (~(tm[:, 1:] | tm[:, :-1])).sum(dim=1)
                else:
                    n_dec += (~tm).sum(dim=1)
        return n_enc, n_dec
