"""Retrieval through predicted global embeddings, as 4M-21 does it.

A trained :class:`~fourm_core.model.FourMNetwork` predicts the tokens of a global-embedding key (any model key whose
``modality_info`` type is ``global_tokens``: a DINOv2 or ImageBind CLS vector as a handful of tokens) from any subset
of inputs (a caption, metadata, another scene's modalities, several at once); that modality's tokenizer decodes the
tokens back to an embedding vector, and the vector is searched by cosine similarity among the embeddings a store holds
for that modality. Because the query and the stored embeddings live in the same space (the teacher's), any input
the model accepts becomes a query over any store that was labelled with the teacher.

Pieces, each usable alone:

* :class:`EmbeddingIndex`: a cosine index (usearch) over ``(ids, vectors)`` with a JSON sidecar recording what it
  was built from, so an index whose store part has changed since is refused instead of answering with wrong ids;
* :func:`build_index`: the index of a store's ``<modality>/raw`` part (index ids are sample indices);
* :func:`predict_embedding` / :func:`retrieve`: model -> tokens (:class:`~fourm_core.inference.GenerationSampler`,
  MaskGIT, one step at temperature 0 by default) -> tokenizer ``decode_raw`` -> search;
* :func:`retrieve_for`: the whole path for an inference :class:`~fourm_core.inference.pipeline.Pipeline` (what
  ``FourM.retrieve`` runs): user values -> contents -> prediction -> hits;
* query contents from raw user text or a stored sample live in :mod:`fourm_core.inference.queries`.

Nothing here names a modality: keys come from arguments, kinds from the specs and the key table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fourm_core.errors import read_json
from fourm_core.spec import ModalityKind

__all__ = [
    "EmbeddingIndex",
    "Hit",
    "IndexMeta",
    "RetrievalError",
    "StaleIndexError",
    "build_index",
    "check_global_modality",
    "part_fingerprint",
    "predict_embedding",
    "read_embeddings",
    "retrieve",
    "retrieve_for",
    "sidecar_path",
]

GLOBAL_KIND = ModalityKind.GLOBAL_TOKENS.value
_RAW = "raw"
SIDECAR_SUFFIX = ".json"
#: Below this many vectors every search is exact (brute force over all stored vectors, SIMD): at the sizes fourm
#: stores have (thousands to a few hundred thousand samples) it takes milliseconds and cannot miss a neighbour.
#: Above it the HNSW graph is searched with a wide beam (``expansion_search``), which is approximate.
EXACT_LIMIT = 200_000


class RetrievalError(ValueError):
    """A retrieval request that cannot run (unknown modality or key, no tokenizer, no index); raised before compute."""


class StaleIndexError(RetrievalError):
    """The index was built from other data than the store part now holds."""


# ----------------------------------------------------------------------------------------------------------------
# the index
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class IndexMeta:
    """What an index was built from; saved as the JSON sidecar next to usearch's file."""

    modality: str = ""
    key: str = ""
    preset: str = ""
    store: str = ""
    part: str = ""
    dim: int = 0
    count: int = 0
    skipped: int = 0
    fingerprint: str = ""
    #: sha256 of the ids and vectors the index file holds (:meth:`EmbeddingIndex.content_hash`): an index file
    #: swapped for another of the same size is refused on load ("" in sidecars written before it was recorded)
    vectors_sha256: str = ""
    metric: str = "cos"
    dtype: str = "f32"
    build_seconds: float = 0.0


class EmbeddingIndex:
    """Cosine-similarity index over float32 vectors keyed by int ids (sample indices).

    Why usearch: it is maintained, ships small self-contained wheels (no BLAS or GPU stack to pull in, unlike faiss),
    saves and loads a single file, and gives exact results at the sizes fourm stores have through its brute-force
    ``exact=True`` search (used below :data:`EXACT_LIMIT` vectors), with an HNSW graph for larger collections.
    """

    def __init__(self, dim: int, meta: IndexMeta | None = None, exact_limit: int = EXACT_LIMIT) -> None:
        from usearch.index import Index

        if dim < 1:
            raise RetrievalError(f"an index needs a positive dimension, got {dim}")
        self.meta = meta or IndexMeta()
        self.meta.dim = int(dim)
        self.exact_limit = exact_limit
        # wide construction and search beams: recall of the graph search stays ~1 where it is used at all
        self._index = Index(
            ndim=int(dim), metric="cos", dtype="f32", connectivity=16, expansion_add=128, expansion_search=256
        )

    def __len__(self) -> int:
        return len(self._index)

    @property
    def dim(self) -> int:
        return self.meta.dim

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> EmbeddingIndex:
        """Add ``vectors`` (N, dim) under ``ids`` (N,). Zero vectors have no direction, so cosine is undefined for
        them: they are left out and counted in ``meta.skipped``."""
        vectors = (
            np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
            if len(vectors)
            else np.zeros((0, self.dim), np.float32)
        )
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(vectors):
            raise RetrievalError(f"{len(vectors)} vectors but {len(ids)} ids")
        if len(np.unique(ids)) != len(ids):
            raise RetrievalError("ids must be unique")
        if (ids < 0).any():
            raise RetrievalError("ids must be non-negative (they are sample indices)")
        finite = np.isfinite(vectors).all(axis=1) & (np.linalg.norm(vectors, axis=1) > 0)
        self.meta.skipped += int((~finite).sum())
        if finite.any():
            self._index.add(ids[finite].astype(np.uint64), vectors[finite])
        self.meta.count = len(self._index)
        return self

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, similarities)``, each (Q, k') with ``k' = min(k, len(index))``, best first; a single query
        vector (dim,) gives (k',) arrays. Similarity is cosine (usearch returns ``1 - cos``)."""
        single = np.ndim(queries) == 1
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = min(int(k), len(self))
        if k < 1:
            raise RetrievalError("the index is empty" if len(self) == 0 else f"k must be >= 1, got {k}")
        if not np.isfinite(q).all() or (np.linalg.norm(q, axis=1) == 0).any():
            raise RetrievalError("a query vector is zero or not finite: cosine similarity is undefined")
        matches = self._index.search(q, k, exact=len(self) <= self.exact_limit)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(q), -1)[:, :k]
        sims = (1.0 - np.asarray(matches.distances, dtype=np.float32)).reshape(len(q), -1)[:, :k]
        return (keys[0], sims[0]) if single else (keys, sims)

    # -- files -----------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write usearch's file at ``path`` and the sidecar (``path`` + ``.json``) next to it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._index.save(str(path))
        self.meta.vectors_sha256 = self.content_hash()
        sidecar_path(path).write_text(json.dumps(asdict(self.meta), indent=2) + "\n")
        return path

    def content_hash(self) -> str:
        """sha256 over the ids (ascending) and the float32 vectors stored under them: what the index answers with,
        independent of usearch's graph layout."""
        keys = np.sort(np.asarray(self._index.keys, dtype=np.uint64))
        h = hashlib.sha256(keys.astype(np.int64).tobytes())
        if len(keys):
            vectors = np.asarray(self._index.get(keys), dtype=np.float32).reshape(len(keys), -1)
            h.update(np.ascontiguousarray(vectors).tobytes())
        return h.hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """An index saved by :meth:`save`; both files must be there."""
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file() or not side.is_file():
            missing = path if not path.is_file() else side
            raise RetrievalError(f"no index at {path} ({missing} is missing; build one with `fourm retrieve build`)")
        recorded = read_json(side, "index sidecar")  # a damaged sidecar names its file
        if not isinstance(recorded, dict):
            raise RetrievalError(f"{side}: not an index sidecar (expected a JSON object)")
        meta = IndexMeta(**{k: v for k, v in recorded.items() if k in IndexMeta.__annotations__})
        index = cls(meta.dim, meta)
        index._index.load(str(path))
        if len(index) != meta.count or index._index.ndim != meta.dim:
            raise RetrievalError(
                f"{path}: the index holds {len(index)} vectors of {index._index.ndim} dims, its "
                f"sidecar says {meta.count} of {meta.dim}"
            )
        if meta.vectors_sha256 and index.content_hash() != meta.vectors_sha256:
            raise RetrievalError(
                f"{path} does not hold the vectors its sidecar {side} records (sha256 differs): the index file was "
                "replaced or damaged; rebuild it with `fourm retrieve build`"
            )
        return index

    def check_store(self, store_path: str | Path | None = None) -> None:
        """Raise :class:`StaleIndexError` unless the store part (default: the one recorded) still holds exactly the
        embeddings the index was built from (same fingerprint: provenance, layout, ids and vector bytes)."""
        from fourm_core.storage.store import AlignedStore

        path = Path(store_path or self.meta.store)
        store = AlignedStore.open(path, mode="r")
        if self.meta.part not in store.parts():
            raise StaleIndexError(f"{path} has no part {self.meta.part!r}: the index was built from {self.meta.store}")
        fingerprint, _, _ = read_embeddings(store, self.meta.part)
        if fingerprint != self.meta.fingerprint:
            raise StaleIndexError(
                f"the index was built from another version of {self.meta.part!r} (built from {self.meta.store}, "
                f"fingerprint {self.meta.fingerprint[:12]}; {path} now has {fingerprint[:12]}): rebuild it"
            )


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an index file."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


# ----------------------------------------------------------------------------------------------------------------
# building from a store
# ----------------------------------------------------------------------------------------------------------------


def check_global_modality(registry: Any, modality: str) -> Any:
    """The spec of ``modality`` if it is a global-token modality with a learned tokenizer; a clear error otherwise.
    (Retrieval needs the tokenizer's decoder to turn predicted tokens into a vector.)"""
    try:
        spec = registry.get(modality).spec
    except KeyError as exc:
        raise RetrievalError(str(exc).strip("\"'")) from None
    globals_ = [m.name for m in registry.modalities() if m.spec.kind == ModalityKind.GLOBAL_TOKENS]
    if spec.kind != ModalityKind.GLOBAL_TOKENS:
        raise RetrievalError(
            f"modality {modality!r} is {spec.kind.value}, not {GLOBAL_KIND}: retrieval needs a "
            f"global embedding modality ({', '.join(globals_) or 'none installed'})"
        )
    if spec.tokenizer is None or spec.tokenizer.transform is None:
        raise RetrievalError(f"modality {modality!r} has no learned tokenizer to decode predicted tokens with")
    return spec


def _raw_array(spec: Any) -> str:
    raw = [a.name for a in spec.storage if a.form == _RAW]
    if not raw:
        raise RetrievalError(f"modality {spec.name!r} stores no raw array")
    return raw[0]


def part_fingerprint(store: Any, part: str, ids: np.ndarray, vectors: np.ndarray) -> str:
    """sha256 over the part's name, layout and provenance and the ids and float32 bytes of its vectors: any
    relabelling that changes a single value (or which samples are labelled) changes it."""
    h = hashlib.sha256()
    layouts = {n: lay.describe() for n, lay in store.layouts(part).items()}
    h.update(json.dumps([part, layouts, store.provenance(part), store.n_samples], sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()


def read_embeddings(store: Any, part: str, array: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """``(fingerprint, ids, vectors)`` of every labelled sample of ``part`` (unlabelled ones are skipped)."""
    layouts = store.layouts(part)
    array = array or next(iter(layouts))
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for block in range(store.n_blocks):
        for index, row in zip(store.block_range(block), store.read_block(part, block), strict=True):
            if row is not None:
                ids.append(index)
                rows.append(np.asarray(row[array], dtype=np.float32).reshape(-1))
    dim = int(np.prod(layouts[array].shape)) if layouts[array].shape else 1
    vectors = np.stack(rows) if rows else np.zeros((0, dim), np.float32)
    id_array = np.asarray(ids, dtype=np.int64)
    return part_fingerprint(store, part, id_array, vectors), id_array, vectors


def build_index(store_path: str | Path, modality: str, registry: Any, preset: str | None = None) -> EmbeddingIndex:
    """The cosine index of the store's ``<modality>/raw`` embeddings; ids are sample indices, unlabelled samples are
    left out. ``preset`` (default: the store's) fixes the model key recorded for queries."""
    from fourm_core.storage.store import AlignedStore

    spec = check_global_modality(registry, modality)
    start = time.perf_counter()
    store = AlignedStore.open(store_path, mode="r")
    part = f"{modality}/{_RAW}"
    if part not in store.parts():
        raise RetrievalError(f"{store_path} has no part {part!r}: label {modality!r} first (fourm data label)")
    fingerprint, ids, vectors = read_embeddings(store, part, _raw_array(spec))
    if not len(ids):
        raise RetrievalError(f"{part!r} of {store_path} has no labelled sample")
    preset = preset or store.preset
    meta = IndexMeta(
        modality=modality,
        key=registry.get(modality).model_key(preset),
        preset=preset,
        store=str(Path(store_path).resolve()),
        part=part,
        fingerprint=fingerprint,
    )
    index = EmbeddingIndex(vectors.shape[1], meta).build(vectors, ids)
    index.meta.build_seconds = round(time.perf_counter() - start, 4)
    return index


# ----------------------------------------------------------------------------------------------------------------
# queries
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One retrieved sample: its index in the store, the cosine similarity and its rank (0 = best)."""

    index: int
    similarity: float
    rank: int


def predict_embedding(
    model: Any,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    target_key: str,
    tokenizer: Any,
    sampler_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The embedding ``model`` predicts for ``target_key`` from ``inputs``: (dim,) for one input mapping, (B, dim)
    for a list of them.

    ``sampler_kwargs`` are :class:`~fourm_core.inference.StepConfig` fields (``scheme``, ``num_steps``,
    ``temperature``, ``top_k``, ``cfg_scale`` ...). The default is one MaskGIT step at temperature 0: every token
    is the argmax given the inputs, which is deterministic and, for 8-16 tokens that encode one vector, what a
    retrieval query wants (sampling adds variance to the query, not information)."""
    from fourm_core.inference.sampler import GenerationSampler
    from fourm_core.inference.tables import key_table_of

    keys = key_table_of(model)
    info = keys.get(target_key)
    if info is None:
        raise RetrievalError(f"the model has no key {target_key!r} (keys: {sorted(keys)})")
    if info.kind != ModalityKind.GLOBAL_TOKENS:
        raise RetrievalError(f"model key {target_key!r} is {info.kind.value}, not {GLOBAL_KIND}")
    if info.max_tokens != int(tokenizer.n_tokens):
        raise RetrievalError(
            f"model key {target_key!r} has {info.max_tokens} tokens, the tokenizer "
            f"{tokenizer.n_tokens}: they belong to different presets"
        )
    step = {"target": target_key, "scheme": "maskgit", "num_steps": 1, "temperature": 0.0, **(sampler_kwargs or {})}
    ids = GenerationSampler(model, keys=keys).generate(inputs, [step], seed=seed)[target_key]
    vectors = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in tokenizer.decode_raw(ids.cpu())])
    return vectors[0] if isinstance(inputs, Mapping) else vectors


def retrieve(
    model: Any,
    inputs: Mapping[str, Any],
    index: EmbeddingIndex,
    tokenizer: Any,
    k: int = 5,
    target_key: str | None = None,
    sampler_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[Hit]:
    """The ``k`` stored samples whose embedding is closest (cosine) to the one ``model`` predicts from ``inputs``,
    best first. ``target_key`` defaults to the key the index was built for."""
    key = target_key or index.meta.key
    if not key:
        raise RetrievalError("no target key: pass target_key or use an index built by build_index")
    query = predict_embedding(model, inputs, key, tokenizer, sampler_kwargs, seed)
    ids, sims = index.search(query, k)
    return [Hit(int(i), float(s), r) for r, (i, s) in enumerate(zip(ids, sims, strict=True))]


def retrieve_for(
    pipe: Any, inputs: Mapping[str, Any], index: Any, k: int = 5, seed: int = 0, check_store: bool = True
) -> list[Hit]:
    """Retrieval for an inference pipeline from user values (``{modality: value}``, as generation takes them):
    ``index`` a file from ``fourm retrieve build`` or a loaded :class:`EmbeddingIndex` (a stale one is refused
    unless ``check_store=False``); the index's modality is predicted, decoded by its tokenizer and searched."""
    from fourm_core.inference.pipeline import ModelAssetsError
    from fourm_core.inference.requests import build_inputs

    loaded = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.load(index)
    modality = loaded.meta.modality
    if not modality:
        raise RetrievalError("the index records no modality; build it with `fourm retrieve build`")
    if check_store and loaded.meta.store:
        loaded.check_store()
    key = pipe.resolve(modality).key
    if key not in pipe.keys:
        raise RetrievalError(f"{modality}: the model has no key {key!r} to predict the index's embeddings")
    if pipe.tokenizers is None:
        raise ModelAssetsError(
            f"{modality}: retrieval decodes predicted tokens with its tokenizer; pass tokenizers= to from_pretrained"
        )
    contents = build_inputs(pipe, inputs)
    return retrieve(pipe.require_network(), dict(contents), loaded, pipe.tokenizer(modality), k, key, seed=seed)
