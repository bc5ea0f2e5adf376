"""Stage 8 of ``fourm demo``: generation, retrieval, chains and held-out evaluation with the demo's trained 4M,
all through one inference :class:`~fourm_core.inference.pipeline.Pipeline`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from fourm_core.apps.demo.scenes import (
    cosine,
    demo_keys,
    draw_sequence,
    flat_ids,
    model_stamp,
    one_thread,
    pictures_of,
    raw_value,
    stem,
)
from fourm_core.apps.demo.settings import (
    DEMO_CHAINS,
    DEMO_ENSEMBLE,
    DEMO_HITS,
    DEMO_SCENES,
    DEMO_VAL_SAMPLES,
    GENERATION_DIR,
    GENERATION_JSON,
)
from fourm_core.registry import Registry

__all__ = ["generate_and_retrieve"]


def evaluate_held_out(pipe: Any, store: Path, samples: int) -> dict[str, dict[str, Any]]:
    """The Table 1 shape for the demo's own model on its held-out scenes: every evaluable target predicted from
    the pixels (one pass), the same with :data:`DEMO_ENSEMBLE` draws fused, and the tokenizer bound
    (:func:`fourm_core.evaluation.evaluate`); rows of ``{modality: {key, n, model, bound}}``."""
    from fourm_core.evaluation import EvalConfig, evaluate
    from fourm_core.storage.store import AlignedStore

    bank = max(1, AlignedStore.open(store, mode="r").n_samples - samples)

    def rows(**fields: Any) -> dict[str, Any]:
        got = evaluate(pipe, store, EvalConfig(samples=samples, bank=bank, **fields))
        return {m: {"key": s.key, "n": s.n, "model": s.model, "bound": s.bound} for m, s in got.items()}

    return {"one pass": rows(), f"ensemble of {DEMO_ENSEMBLE}": rows(ensemble=DEMO_ENSEMBLE, temperature=0.7)}


def generate_and_retrieve(
    registry: Registry,
    out: Path,
    console: Console,
    scenes: int = DEMO_SCENES,
    chains: int = DEMO_CHAINS,
    hits: int = DEMO_HITS,
) -> dict[str, Any]:
    """Stage 8, with the demo's trained 4M on held-out scenes of the demo store: every target modality generated
    from the pixels (ground truth, tokenizer reconstruction and prediction side by side, one picture per scene and
    target; texts and embedding similarities for sequences and global tokens); a chain text -> global embedding ->
    RGB tokens from the scenes' stored texts; retrieval by predicted global embeddings over the store, queried by a
    scene's pixels and by its text. Writes pictures under ``generation/`` and ``generation/generation.json`` (paths
    relative to ``out``); a record made with the same model and settings is reused.

    Everything runs through one :class:`~fourm_core.inference.pipeline.Pipeline`: generation from the pixels is one
    batch of all scenes per target (:meth:`Pipeline.generate`, one result per scene), the chain a one-sample batch
    with a list schedule."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fourm_core.inference.pipeline import Pipeline
    from fourm_core.inference.queries import describe_samples, store_inputs, text_inputs
    from fourm_core.inference.requests import GenerationRequestError, validate_targets
    from fourm_core.inference.retrieval import build_index, retrieve
    from fourm_core.inference.schedule import StepConfig
    from fourm_core.spec import ModalityKind
    from fourm_core.storage.store import AlignedStore
    from fourm_core.training.engine import FINAL
    from fourm_core.viz.grid import tile_row
    from fourm_core.viz.pictures import picture
    from fourm_core.viz.png import save_png

    folder = out / GENERATION_DIR
    record_path = folder / GENERATION_JSON
    weights = out / "model" / FINAL / "model.safetensors"
    # ``record``: the layout of generation.json; a record written by an older fourm is made again
    stamp = {"model": model_stamp(weights), "scenes": scenes, "chains": chains, "hits": hits, "record": 3}
    if record_path.exists():
        cached = json.loads(record_path.read_text())
        if cached.get("stamp") == stamp and all((out / p).exists() for p in pictures_of(cached)):
            cached["cached"] = True
            return cached
    start = time.perf_counter()
    store_path = out / "world.zarr"
    store = AlignedStore.open(store_path, mode="r")
    pipe = Pipeline.from_pretrained(
        weights.parent,
        tokenizers=out / "tokenizers",
        vocabulary=out / "vocab" / "text_tokenizer.json",
        registry=registry,
    )
    info, preset, vocabulary = pipe.keys, pipe.preset, pipe.vocabulary
    members = registry.model_keys(preset)
    keys = demo_keys(registry, info, preset)
    if keys["pixels"] is None:
        raise ValueError("the demo model has no pixel input to generate from")
    pixel_modality = members[keys["pixels"]][0].name
    config_path = out / "model" / "config.yaml"  # JSON written by the training run
    val = json.loads(config_path.read_text())["datasets"][0]["val_samples"] if config_path.exists() else 0
    n = store.n_samples
    held_out = list(range(n - (val or DEMO_VAL_SAMPLES), n))[:scenes]

    requested, skipped = [], {}
    for key, meta in info.items():
        if not meta.is_tokens or not meta.target:
            continue
        try:
            requested += validate_targets(pipe, [key], [keys["pixels"]])
        except GenerationRequestError as exc:
            skipped[key] = str(exc)
    targets = [r.key for r in requested]
    parts = set(store.parts())
    keys["global"] = next(
        (k for k in targets if info[k].kind == ModalityKind.GLOBAL_TOKENS and f"{members[k][0].name}/raw" in parts),
        keys["global"],
    )
    tokenizer = {k: pipe.tokenizer(members[k][0].name) for k in targets if not info[k].is_sequence}
    texts = describe_samples(store_path, registry, range(n))
    thumbs: dict[int, str] = {}

    def rel(path: Path) -> str:
        return path.relative_to(out).as_posix()

    def thumb(index: int) -> str:
        if index not in thumbs:
            raw = raw_value(registry, store, pixel_modality, index)
            thumbs[index] = rel(save_png(picture("color", raw), folder / "store" / f"{index}.png"))
        return thumbs[index]

    def row_png(tiles: list[np.ndarray | None], path: Path) -> str:
        return rel(save_png(tile_row(tiles, 96), path))

    chain_ok = (
        all(keys[k] for k in ("text", "global", "image")) and keys["global"] in targets and keys["image"] in targets
    )
    retrieval_ok = keys["global"] in targets and f"{members[keys['global']][0].name}/raw" in store.parts()
    n_chains = min(chains, len(held_out)) if chain_ok else 0
    total = len(held_out) * len(targets) + n_chains + (len(held_out) * 2 if retrieval_ok else 0)
    progress = Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    record: dict[str, Any] = {"stamp": stamp, "preset": preset, "keys": keys, "skipped": skipped, "scenes": []}
    torch.manual_seed(0)
    with progress, one_thread():
        task = progress.add_task("generation from pixels", total=total)
        contents = [store_inputs(pipe, store_path, i) for i in held_out]
        batch = [{pixel_modality: raw_value(registry, store, pixel_modality, i)} for i in held_out]
        scenes_out = [{"index": i, "text": texts.get(i, ""), "picture": thumb(i), "targets": []} for i in held_out]
        images = [np.asarray(b[pixel_modality]) for b in batch]
        record["target_seconds"] = {}
        for req in requested:
            key = req.key
            progress.update(task, description=f"from pixels: {key}")
            t0 = time.perf_counter()
            results = pipe.generate(batch, [key], steps=8, temperature=0.5, seed=0)
            for s, (index, scene) in enumerate(zip(held_out, scenes_out, strict=True)):
                output = results[s][key]
                entry: dict[str, Any] = {"key": key, "kind": info[key].kind.value}
                path = folder / f"scene_{index}" / f"{stem(key)}.png"
                stored = contents[s].get(key)
                if key in tokenizer:
                    truth = raw_value(registry, store, req.modality, index)
                    recon = tokenizer[key].decode_raw(torch.as_tensor(stored)[None])[0] if stored is not None else None
                    if output.picture() is not None:
                        values = (truth, recon, output.array)
                        entry["picture"] = row_png(
                            [picture(output.transform, np.asarray(v)) if v is not None else None for v in values], path
                        )
                    else:  # a vector: how close the prediction and the reconstruction come to the stored one
                        entry["cosine_prediction"] = cosine(output.array, truth)
                        entry["cosine_reconstruction"] = cosine(recon, truth)
                else:
                    entry["truth"] = (
                        " ".join(vocabulary.decode(flat_ids(stored)).split()) if stored is not None else None
                    )
                    entry["prediction"] = output.text
                    entry["parsed"] = output.parse_error is None
                    drawn = [draw_sequence(pipe, req, entry["truth"], images[s]), output.picture()]
                    if any(d is not None for d in drawn):  # stored | generated, as the plugin draws them
                        entry["picture"] = row_png(drawn, path)
                scene["targets"].append(entry)
                progress.advance(task)
            record["target_seconds"][key] = round(time.perf_counter() - t0, 3)
        record["scenes"] = scenes_out

        emb_index = None
        if retrieval_ok:
            gkey = keys["global"]
            emb_index = build_index(store_path, members[gkey][0].name, registry, preset)
            emb_index.save(folder / "world.index")

            def hit_list(found: list[Any]) -> list[dict[str, Any]]:
                return [
                    {
                        "index": h.index,
                        "similarity": round(h.similarity, 4),
                        "picture": thumb(h.index),
                        "text": texts.get(h.index, ""),
                        "held_out": h.index >= n - (val or DEMO_VAL_SAMPLES),
                    }
                    for h in found
                ]

            queries = []
            for index in held_out:
                progress.update(task, description=f"retrieval: scene {index}")
                query = store_inputs(pipe, store_path, index, keys=[keys["pixels"]])
                found = retrieve(pipe.network, query, emb_index, tokenizer[gkey], k=hits)
                queries.append({"by": keys["pixels"], "scene": index, "picture": thumb(index), "hits": hit_list(found)})
                progress.advance(task)
                text = texts.get(index, "")
                if keys["text"] and text:
                    query = text_inputs(pipe, {keys["text"]: text})
                    found = retrieve(pipe.network, query, emb_index, tokenizer[gkey], k=hits)
                    queries.append({"by": keys["text"], "scene": index, "text": text, "hits": hit_list(found)})
                progress.advance(task)
            index_file = rel(folder / "world.index")
            record["retrieval"] = {"key": gkey, "size": len(emb_index), "file": index_file, "queries": queries}

        record["chains"] = []
        for index in held_out[:n_chains]:
            progress.update(task, description=f"chain: scene {index}")
            text = texts.get(index, "")
            gkey, ikey = keys["global"], keys["image"]
            linear = {"scheme": "maskgit", "temperature": 0.5, "temperature_schedule": "linear"}
            steps = [
                StepConfig(target=gkey, num_steps=min(8, info[gkey].max_tokens), **linear),
                StepConfig(target=ikey, num_steps=min(8, info[ikey].max_tokens), cfg_scale=2.0, **linear),
            ]
            t0 = time.perf_counter()
            (result,) = pipe.generate([{members[keys["text"]][0].name: text}], [gkey, ikey], schedule=steps, seed=index)
            truth = picture("color", raw_value(registry, store, pixel_modality, index))
            chain: dict[str, Any] = {
                "scene": index,
                "text": text,
                "steps": [s.model_dump(exclude_defaults=True) for s in steps],
                "picture": row_png([truth, result[ikey].picture()], folder / f"chain_{index}.png"),
            }
            chain["seconds"] = round(time.perf_counter() - t0, 3)
            if emb_index is not None:
                ids, sims = emb_index.search(np.asarray(result[gkey].array, np.float32).reshape(-1), 1)
                chain["nearest"] = {
                    "index": int(ids[0]),
                    "similarity": round(float(sims[0]), 4),
                    "picture": thumb(int(ids[0])),
                    "text": texts.get(int(ids[0]), ""),
                }
            record["chains"].append(chain)
            progress.advance(task)
        progress.update(task, description="held-out evaluation")
        record["evaluation"] = evaluate_held_out(pipe, store_path, val or DEMO_VAL_SAMPLES)
    record["seconds"] = round(time.perf_counter() - start, 2)
    folder.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record
