"""Helpers of the demo's generation stage: reading the store, choosing the model keys by kind, the record's
bookkeeping, and running small ops on one thread. Nothing here names a modality."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fourm_core.keys import KeyTable
from fourm_core.registry import Registry

__all__ = [
    "cosine",
    "demo_keys",
    "draw_sequence",
    "flat_ids",
    "generation_line",
    "model_stamp",
    "one_thread",
    "pictures_of",
    "raw_value",
    "stem",
]


def stem(name: str) -> str:
    """A file stem for a model key (keys carry ``@``)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def flat_ids(content: Any) -> list[int]:
    """Token ids of a sequence content (a tensor, or chunks of them for chunk-masked keys), up to ``[EOS]``,
    padding dropped."""
    from fourm_core.data.masking import EOS_ID, PAD_ID

    if isinstance(content, (list, tuple)):
        ids = [i for chunk in content for i in flat_ids_raw(chunk)]
    else:
        ids = flat_ids_raw(content)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return [i for i in ids if i != PAD_ID]


def flat_ids_raw(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1).tolist()]


def raw_value(registry: Registry, store: Any, modality: str, index: int) -> Any:
    """The stored raw value of ``modality`` for sample ``index`` (its first raw array; for a tokenizer of another
    modality's array, such as RGB tokens, that array), or ``None`` when the sample has none."""
    spec = registry.get(modality).spec
    raw = [a.name for a in spec.storage if a.form == "raw"]
    part, name = f"{modality}/raw", raw[0] if raw else None
    if name is None and spec.tokenizer is not None and spec.tokenizer.source:
        source, _, name = spec.tokenizer.source.partition(".")
        part = f"{source}/raw"
    if name is None or part not in store.parts() or store.state(part)[index] != 1:
        return None
    value = store.read(part, index)
    return value.get(name) if isinstance(value, dict) else None


def cosine(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    x, y = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return round(float(x @ y) / norm, 4) if norm else None


def model_stamp(weights: Path) -> str:
    stat = weights.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def pictures_of(record: Any) -> list[str]:
    """Every picture file a stage-8 record names (to tell whether a cached record is complete)."""
    if isinstance(record, dict):
        return [p for k, v in record.items() for p in ([v] if k == "picture" and v else pictures_of(v))]
    if isinstance(record, list):
        return [p for v in record for p in pictures_of(v)]
    return []


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch (and numpy's BLAS, when ``threadpoolctl`` is installed) on one thread for the block. Generation runs
    batches of a few samples through a tiny model and draws small pictures: the ops are too small to split, and on a
    shared 2-core machine two spinning threads made stage 8 about 20x slower (13.6 s instead of 0.7 s per target,
    measured while other jobs ran); one thread was faster in every measurement, busy machine or not."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only the numpy side stays multi-threaded
        blas: Any = contextlib.nullcontext()
    else:
        blas = threadpool_limits(1)
    try:
        with blas:
            yield
    finally:
        torch.set_num_threads(threads)


def demo_keys(registry: Registry, info: KeyTable, preset: str) -> dict[str, str | None]:
    """The model keys stage 8 uses, chosen by kind and spec, never by name: the pixel input, a text sequence input
    (one stored free-text array), the first global-token key, and the image-token key whose tokenizer encodes the
    pixel input's own array (RGB tokens)."""
    from fourm_core.spec import ModalityKind, Vocabulary

    members = registry.model_keys(preset)
    pixels = next((k for k, v in info.items() if v.kind == ModalityKind.PIXELS and v.input), None)
    text = None
    for key, meta in info.items():
        spec = members[key][0].spec
        raw = [a for a in spec.storage if a.form == "raw"]
        one_text = len(raw) == 1 and raw[0].dtype == "text"
        if meta.is_sequence and meta.is_tokens and meta.input and len(members[key]) == 1 and one_text:
            if spec.vocabulary == Vocabulary.TEXT:
                text = key
                break
    glob = next((k for k, v in info.items() if v.kind == ModalityKind.GLOBAL_TOKENS), None)
    image = None
    if pixels is not None:
        prefix = f"{members[pixels][0].name}."
        for key, meta in info.items():
            tok = members[key][0].spec.tokenizer
            if meta.kind == ModalityKind.IMAGE_TOKENS and tok is not None and (tok.source or "").startswith(prefix):
                image = key
                break
    return {"pixels": pixels, "text": text, "global": glob, "image": image}


def generation_line(record: dict[str, Any]) -> str:
    """Stage 8 in one console line."""
    scenes = record.get("scenes", [])
    targets = len(scenes[0]["targets"]) if scenes else 0
    parts = [f"{targets} targets generated from pixels for {len(scenes)} held-out scenes"]
    if record.get("chains"):
        parts.append(f"{len(record['chains'])} text -> global -> image chains")
    retrieval = record.get("retrieval")
    if retrieval:
        own = [q for q in retrieval["queries"] if q["hits"] and q["hits"][0]["index"] == q["scene"]]
        parts.append(
            f"retrieval over {retrieval['size']} scenes by {retrieval['key']} ({len(own)}/"
            f"{len(retrieval['queries'])} queries find their own scene first)"
        )
    cached = " (reused)" if record.get("cached") else f" in {record.get('seconds', 0):.0f}s"
    return ", ".join(parts) + cached


def draw_sequence(pipe: Any, req: Any, text: str | None, image: np.ndarray) -> np.ndarray | None:
    """The picture the modality's decoder draws of a stored sequence text (``None`` when there is none)."""
    from fourm_core.viz.rendering import render_output

    if not text:
        return None
    try:
        value = pipe.registry.key_serializer(req.key, pipe.preset).parse(text)
    except Exception:  # noqa: BLE001 (a stored text the codec cannot read back is shown as text only)
        return None
    return render_output(pipe.registry, req.modality, value, pipe.render_context(image))
