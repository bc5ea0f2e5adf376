"""``fourm data tokenize``: write every modality's tokens into the store, block by block, resumably, with K crops.

Crop 0 is always the full image without flip (ml-4m's convention); crops 1..K-1 are random resized crops (area
50-100%, aspect 3/4..4/3) with a random horizontal flip, drawn from ``(seed, sample index)`` so a resumed or
repeated run draws the same crops. The settings are stored once per sample in the ``crops`` part as ml-4m's
``(K, 5)`` rows ``[top, left, height, width, flip]`` in store pixels, so loaders can apply the same crop to the
modalities that are not pre-tokenised (boxes, poses, captions are unaffected by the crop in this version: see
below). Feature maps are cropped in their own grid by the same fractions; global embeddings and per-item tokens
(poses, instance masks) are tokenised once and repeated for every crop, since the teacher's global embedding of a
crop is not available without re-running the teacher.

Each modality's tokens go to part ``<modality>/tokens``; the part records which tokenizer (and which weights, by
hash) wrote it, so a retrained tokenizer cannot silently mix its tokens with the old ones.

Tokens are only as good as the raw data they come from: the store's manifest is compared with the installed plugins
first, and each raw block is read with its digest checked. A damaged raw block (a lost or changed file, which Zarr
would read back as zeros) is marked to redo and its tokens wait, as do the tokens of raw blocks not yet labelled;
rerun ``fourm data label`` then this command.

With ``shard=I/N`` (``fourm data tokenize --shard I/N``) a run writes crops and tokens, and repairs, only the blocks
of that shard (block ``b`` is shard ``b % N``'s, as in ``fourm data label --shard``: see
:mod:`fourm_core.storage.shards`), so N machines pre-tokenise one store at once; a run without a shard finishes the
rest. Every block, crops included, is written under its claim, so concurrent runs never write one block twice.

``device`` and ``dtype`` (``fourm data tokenize --device auto|cpu|cuda --dtype fp32|bf16``, see
:mod:`fourm_core.devices`) put the tokenizer modules and each batch on the device and run the encoder in that
precision. bf16 tokens may differ from fp32 ones, so the precision is part of the tokens part's provenance and of
its configuration hash: a part begun in one precision refuses the other ("refusing to mix outputs"). The device is
recorded by no hash: fp32 tokens are the same on the CPU and on CUDA (IEEE fp32 on both), so a part may be written
by both. fp32 keeps the hash it had before precisions existed, so earlier parts resume.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core.devices import Placement
from fourm_core.registry import Registry
from fourm_core.spec import ArraySpec
from fourm_core.storage.location import StoreLocation
from fourm_core.storage.manifest import require_manifest
from fourm_core.storage.shards import Shard, as_shard, repair_blocks
from fourm_core.storage.store import DONE, FAILED, AlignedStore, BlockDamagedError
from fourm_core.tokenizers.config import tokenizer_name
from fourm_core.tokenizers.tokenizer import CONFIG, WEIGHTS, Tokenizer, TokenizerError
from fourm_core.tokenizers.training import item_function, source_of
from fourm_core.tokenizers.transforms import Transform

__all__ = ["CROPS_PART", "TokenizeResult", "apply_crop", "crop_settings", "tokenize_store"]

CROPS_PART = "crops"


@dataclass
class TokenizeResult:
    """What happened to one modality."""

    modality: str
    tokenizer: str | None
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    note: str = ""

    @property
    def samples_per_s(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


def crop_settings(index: int, image_size: int, crops: int, seed: int) -> np.ndarray:
    """``(crops, 5)`` int32 ``[top, left, height, width, flip]``; row 0 is the full image."""
    out = np.zeros((crops, 5), np.int32)
    out[0] = (0, 0, image_size, image_size, 0)
    rng = np.random.default_rng([seed, index])
    for k in range(1, crops):
        area = rng.uniform(0.5, 1.0) * image_size**2
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        h = int(min(image_size, max(8, round(np.sqrt(area / ratio)))))
        w = int(min(image_size, max(8, round(np.sqrt(area * ratio)))))
        top, left = int(rng.integers(0, image_size - h + 1)), int(rng.integers(0, image_size - w + 1))
        out[k] = (top, left, h, w, int(rng.random() < 0.5))
    return out


def apply_crop(raw: np.ndarray, transform: Transform, setting: Sequence[int], image_size: int) -> np.ndarray:
    """``raw`` (H x W [x C], pixels or a feature grid) cropped by ``setting`` (in ``image_size`` pixels), resized back
    to its own shape with the transform's resampling, flipped when asked."""
    top, left, h, w, flip = (int(v) for v in setting)
    if (top, left, h, w, flip) == (0, 0, image_size, image_size, 0):
        return raw
    if transform.resample is None:
        raise ValueError(f"transform {transform.name!r} data cannot be cropped")
    a = np.asarray(raw)
    side_h, side_w = a.shape[:2]
    t = torch.from_numpy(a.astype(np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    # output pixel centres -> normalised source coordinates of the crop ([-1, 1], align_corners=False)
    ys = (top + (torch.arange(side_h) + 0.5) * h / side_h) / image_size * 2 - 1
    xs = (left + (torch.arange(side_w) + 0.5) * w / side_w) / image_size * 2 - 1
    if flip:
        xs = xs.flip(0)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
    out = F.grid_sample(t, grid, mode=transform.resample, padding_mode="border", align_corners=False)[0]
    if flip:
        for c in transform.flip_negates:
            out[c] = -out[c]
    out = out[0] if a.ndim == 2 else out.permute(1, 2, 0)
    return out.numpy().astype(a.dtype)


def _weights_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG, WEIGHTS):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]


def _token_arrays(storage: Sequence[ArraySpec]) -> list[ArraySpec]:
    return [a for a in storage if a.form == "tokens"]


def _encode_block(
    tok: Tokenizer,
    rows: list[dict[str, Any] | None],
    indices: range,
    array: str | None,
    crops: int,
    image_size: int,
    seed: int,
    per_item: bool,
    place: Placement | None = None,
) -> tuple[list[dict[str, Any] | None], dict[int, str]]:
    """Tokens of one block's samples (``None`` and a message for a sample that fails)."""
    values: list[dict[str, Any] | None] = [None] * len(rows)
    errors: dict[int, str] = {}
    items = item_function(tok.config)
    batch: list[np.ndarray] = []
    owners: list[tuple[int, int]] = []  # (row, count)
    for r, (index, row) in enumerate(zip(indices, rows, strict=True)):
        if row is None:
            errors[index] = f"{tok.name}: the raw data of sample {index} is missing or failed"
            continue
        try:
            if per_item:
                found = list(items(row, tok.config.input_size))
            elif tok.transform.resample is None:
                found = [np.asarray(row[array])]
            else:
                settings = crop_settings(index, image_size, crops, seed)
                found = [apply_crop(np.asarray(row[array]), tok.transform, s, image_size) for s in settings]
            batch.extend(found)
            owners.append((r, len(found)))
        except Exception as exc:  # a bad sample must not stop the block
            errors[index] = f"sample {index}, tokenizer {tok.name!r}: {exc}"
    with (place or Placement()).autocast():
        ids = (
            torch.cat([tok.encode_raw(batch[i : i + 256]) for i in range(0, len(batch), 256)])
            if batch
            else torch.zeros((0, tok.n_tokens), dtype=torch.long)
        )
    start = 0
    for r, count in owners:
        tokens = ids[start : start + count].numpy().astype(np.int16)
        start += count
        if not per_item and tok.transform.resample is None:
            tokens = np.repeat(tokens, crops, 0)
        values[r] = {"tokens": tokens}
    return values, errors


def tokenize_store(
    store_path: str | Path | StoreLocation,
    tokenizers: str | Path,
    registry: Registry,
    only: Sequence[str] | None = None,
    crops: int = 1,
    seed: int = 0,
    on_progress: Callable[[str, int, int], None] | None = None,
    shard: Shard | str | tuple[int, int] | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
) -> list[TokenizeResult]:
    """Tokenise every modality with token arrays and a trained tokenizer; resume where a previous run stopped.
    ``shard`` (``"I/N"``, ``(I, N)`` or a :class:`~fourm_core.storage.shards.Shard`): only that shard's blocks.
    ``device`` (``auto`` / ``cpu`` / ``cuda``) and ``dtype`` (``fp32`` / ``bf16``): where and in which precision
    the tokenizers run (``cuda`` without a GPU is one line, before the store is opened)."""
    place = Placement.resolve(device, dtype)
    shard = as_shard(shard)
    if crops < 1:
        raise ValueError(f"crops must be at least 1, got {crops}")
    store = AlignedStore.open(store_path, mode="r+")
    require_manifest(store, registry)
    results: list[TokenizeResult] = []
    store.ensure(
        CROPS_PART,
        [ArraySpec(name="settings", dtype="int32", shape=(crops, 5))],
        provenance={"crops": crops, "seed": seed, "config_hash": f"crops={crops},seed={seed}"},
    )
    for block in shard.blocks(store.todo_blocks(CROPS_PART)):
        with store.claim(CROPS_PART, block) as pending:
            if pending:
                rows = [{"settings": crop_settings(i, store.image_size, crops, seed)} for i in store.block_range(block)]
                store.write_block(CROPS_PART, block, rows)
    for modality in registry.modalities():
        spec = modality.spec
        arrays = _token_arrays(spec.storage)
        if not arrays or (only and modality.name not in only):
            continue
        if spec.tokenizer is None or spec.tokenizer.transform is None:
            results.append(TokenizeResult(modality.name, None, note="no learned tokenizer declared"))
            continue
        name = tokenizer_name(spec)
        directory = Path(tokenizers) / name
        try:
            tok = Tokenizer.from_pretrained(directory)
        except TokenizerError:
            results.append(TokenizeResult(modality.name, name, note=f"not trained: run `fourm tokenizer train {name}`"))
            continue
        place.move(tok)
        if tok.config.preset != store.preset:
            results.append(
                TokenizeResult(
                    modality.name, name, note=f"tokenizer is for preset {tok.config.preset}, store is {store.preset}"
                )
            )
            continue
        part_modality, array = source_of(tok.config, modality.name, registry)
        raw_part = f"{part_modality}/raw"
        if raw_part not in store.parts():
            results.append(TokenizeResult(modality.name, name, note=f"the store has no {raw_part}"))
            continue
        per_item = tok.config.items is not None
        store.ensure(
            f"{modality.name}/tokens",
            arrays,
            dims={"K": crops, "L": tok.n_tokens},
            provenance={
                "tokenizer": name,
                "family": tok.config.family,
                "crops": 1 if per_item else crops,
                "seed": seed,
                "dtype": place.dtype,
                "config_hash": f"{_weights_hash(directory)}-crops={crops}-seed={seed}" + _dtype_tag(place),
            },
        )
        result = TokenizeResult(modality.name, name)
        repair_blocks(store, f"{modality.name}/tokens", shard)
        todo = shard.blocks(store.todo_blocks(f"{modality.name}/tokens"))
        start = time.perf_counter()
        repaired = repair_blocks(store, raw_part, shard)
        waiting: list[str] = [f"{d}; marked to redo" for d in repaired]
        skip = {d.block for d in repaired}
        for n, block in enumerate(todo, 1):
            with store.claim(f"{modality.name}/tokens", block) as pending:
                rows = _raw_rows(store, raw_part, block, waiting) if pending and block not in skip else None
                if rows is not None:
                    indices = store.block_range(block)
                    values, errors = _encode_block(
                        tok, rows, indices, array, crops, store.image_size, seed, per_item, place
                    )
                    store.write_block(f"{modality.name}/tokens", block, values, errors)
                    result.done += sum(v is not None for v in values)
                    result.failed += len(errors)
            if on_progress is not None:
                on_progress(modality.name, n, len(todo))
        result.seconds = time.perf_counter() - start
        result.note = _waiting_note(raw_part, waiting) if waiting else "" if todo else "already tokenised"
        results.append(result)
    return results


def _dtype_tag(place: Placement) -> str:
    """The precision's part of a tokens part's configuration hash: none for fp32 (the hash parts had before there
    was a choice, so they resume), ``-dtype=bf16`` otherwise. Never the device (see the module docstring)."""
    return "" if place.dtype == "fp32" else f"-dtype={place.dtype}"


def _raw_rows(store: AlignedStore, part: str, block: int, waiting: list[str]) -> list[dict[str, Any] | None] | None:
    """The raw rows of ``block``, digest checked; None (and a line in ``waiting``) when they are not all written or
    damaged: a damaged block is marked to redo, so ``fourm data label`` rewrites it."""
    state = store.block_state(part, block)
    r = store.block_range(block)
    if not ((state == DONE) | (state == FAILED)).all():
        waiting.append(f"{part}: block {block} (samples {r.start}..{r.stop - 1}) is not labelled yet")
        return None
    try:
        return store.read_block(part, block, check="digest")
    except BlockDamagedError as exc:
        store.mark_pending(part, block)
        waiting.append(f"{exc}; marked to redo")
        return None


def _waiting_note(part: str, waiting: list[str]) -> str:
    more = f" (and {len(waiting) - 1} more blocks)" if len(waiting) > 1 else ""
    return f"tokens wait for {part}: {waiting[0]}{more}; run `fourm data label`, then tokenize again"
