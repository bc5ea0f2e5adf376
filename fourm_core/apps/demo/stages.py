"""Stages 1-7 of ``fourm demo`` that write files from the store: the serialized sequence examples, the caption
corpus, the tokenizers (trained or reused) with their bound table, and the tiny 4M (trained or reused)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from fourm_core.apps.demo.settings import DEMO_MODEL, DEMO_VAL_SAMPLES
from fourm_core.registry import Registry
from fourm_core.serialization import FromStore, SerializationError

__all__ = ["bound_markdown", "sequence_examples", "stored_texts", "train_model", "train_tokenizers"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype} {list(value.shape)}>"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def sequence_examples(registry: Registry, store: Any, text: Any, index: int) -> list[str]:
    """The labelled sample ``index`` of every sequence modality, as the official string and its ids."""
    lines = [
        "# Serialized sequences of one synthetic scene",
        "",
        f"Sample {index} of the demo store: each sequence modality's stored value, its official-format string "
        "and its ids in the demo vocabulary.",
        "",
    ]
    for key, members in registry.model_keys(store.preset).items():
        if not all(registry.serializer_spec(m.name) for m in members):
            continue
        values = {}
        for m in members:
            part = f"{m.name}/raw"
            if part in store.parts() and store.state(part)[index] == 1:
                values[m.name] = store.read(part, index)
                tokens = f"{m.name}/tokens"
                if tokens in store.parts() and store.state(tokens)[index] == 1:
                    values[m.name] = {**values[m.name], **store.read(tokens, index)}
        if not values:
            continue
        serializer = registry.key_serializer(key, store.preset)
        assemble, shown = False, None
        if len(members) > 1:
            value = {name: next(iter(v.values())) for name, v in values.items()}
            shown = value
        else:
            (raw,) = values.values()
            if isinstance(serializer, FromStore):  # items + their tokens (poses, instances)
                value, assemble = raw, True
            elif len(raw) > 1:
                lines += [f"## `{key}`", "", f"- stored as arrays {sorted(raw)} and no codec assembles them", ""]
                continue
            else:
                value = shown = next(iter(raw.values()))
                if hasattr(serializer, "choose"):  # stores keep several variants (palettes of 1..7 colours): draw one
                    value = shown = serializer.choose(value, random.Random(index))
        try:
            if assemble:
                value = serializer.from_store(value)
            serialized = serializer.serialize(value)
        except SerializationError as exc:  # e.g. item tokens come from a tokenizer that is not trained yet
            lines += [f"## `{key}`", "", f"- not serializable yet: {exc}", ""]
            continue
        ids = text.encode(serialized)
        lines += [
            f"## `{key}` ({', '.join(values)}{', assembled from stored items and their tokens' if assemble else ''})",
            "",
            *([f"- stored: `{json.dumps(_jsonable(shown))[:300]}`"] if shown is not None else []),
            f"- string: `{serialized}`",
            f"- {len(ids)} ids: `{ids[:48]}{' ...' if len(ids) > 48 else ''}`",
            "",
        ]
    return lines


def stored_texts(registry: Registry, store: Any) -> list[str]:
    """Every stored free-text array of every labelled modality (the caption corpus of this store)."""
    texts = []
    for m in registry.modalities():
        names = [a.name for a in m.spec.storage if a.dtype == "text"]
        part = f"{m.name}/raw"
        if names and part in store.parts():
            for block in range(store.n_blocks):
                texts += [row[n] for row in store.read_block(part, block) if row for n in names]
    return texts


def train_tokenizers(
    registry: Registry, store: Any, out: Path, seconds: float, console: Console
) -> list[dict[str, Any]]:
    """Train (or reuse) every learned tokenizer on the demo store, then pre-tokenise it; returns the reports."""
    from fourm_core.tokenizers.config import TrainConfig
    from fourm_core.tokenizers.pretokenize import tokenize_store
    from fourm_core.tokenizers.workflow import REPORT, plan_tokenizers, train_tokenizer

    directory = out / "tokenizers"
    reports = []
    for plan in plan_tokenizers(registry, [], store):
        if plan.skip_reason:
            console.print(f"  skipped tokenizer {plan.name}: {escape(plan.skip_reason)}", highlight=False)
            continue
        saved = directory / plan.name / REPORT
        if saved.exists():
            reports.append(json.loads(saved.read_text()))
            continue
        report = train_tokenizer(registry, store, plan, directory, TrainConfig(steps=100000, max_seconds=seconds))
        bound = ", ".join(f"{k} {v:.3f}" for k, v in report["evaluation"]["bound"].items())
        console.print(f"  {plan.name}: {report['training']['steps']} steps, bound {bound}", highlight=False)
        reports.append(report)
    tokenize_store(store.path, directory, registry)
    return reports


def bound_markdown(reports: list[dict[str, Any]], seconds: float) -> str:
    from fourm_core.tokenizers.workflow import bound_markdown as table

    intro = (
        f"Each tokenizer trained for about {seconds:.0f} s on the demo store (see benchmarks/ for the 110 s table). "
        "Baseline: the training mean (or majority) for every sample."
    )
    return f"# Tokenizer bounds on held-out demo scenes\n\n{intro}\n\n{table(reports)}"


def train_model(registry: Registry, out: Path, seconds: float, console: Console) -> dict[str, Any]:
    """Train (or reuse) a tiny 4M on the demo store for about ``seconds``; write curves, the validation table and
    the pixels-to-all probe picture. The step count comes from timing a few steps first."""
    from fourm_core.model.network import FourMNetwork
    from fourm_core.training.config import RunConfig
    from fourm_core.training.data import TrainingData
    from fourm_core.training.engine import FINAL, LOG_NAME, steps_for_seconds, train
    from fourm_core.training.report import curves_svg, probe_figure, read_log, validation_table
    from fourm_core.vocab import TextVocabulary

    run = out / "model"
    summary_path = run / "summary.json"
    if (run / FINAL / "model.safetensors").exists() and summary_path.exists():
        return json.loads(summary_path.read_text())
    base = {
        "out_dir": str(run),
        "vocabulary": str(out / "vocab" / "text_tokenizer.json"),
        "tokenizers": str(out / "tokenizers"),  # recorded in final/fourm.json: fm.FourM.from_pretrained(run) works
        "datasets": [{"name": "world", "store": str(out / "world.zarr"), "val_samples": DEMO_VAL_SAMPLES}],
        "input_tokens": 128,
        "target_tokens": 128,
        "model": {"size": "tiny", "preset": "tiny", "overrides": DEMO_MODEL},
        "optim": {"lr": 1e-3, "min_lr": 1e-5},
        "engine": {"micro_batch_size": 16},
    }
    steps = max(5, steps_for_seconds(RunConfig.model_validate({**base, "schedule": {"steps": 1}}), seconds, registry))
    config = RunConfig.model_validate(
        {
            **base,
            "schedule": {"steps": steps, "warmup_steps": max(1, steps // 12)},
            "eval_every": max(1, steps // 8),
            "checkpoint_every": max(1, steps // 4),
            "log_every": max(1, steps // 40),
        }
    )
    result = train(config, registry)
    records = read_log(run / LOG_NAME)
    curves_svg(records, run / "curves.svg")
    (run / "validation.md").write_text(validation_table(records, every=2) + "\n")
    data = TrainingData(config, registry, TextVocabulary.load(config.vocabulary))
    model = FourMNetwork.from_pretrained(run / FINAL)
    accuracy = probe_figure(model, data, registry, out / "tokenizers", run / "pixels2all.png", n=6)
    summary = {
        "steps": result.steps,
        "validation_first": result.validation[0]["loss"],
        "validation_last": result.validation[-1]["loss"],
        "probe_token_accuracy": accuracy,
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
