"""``fourm bench quality``: the paper's Table 1 at the scale of a store: does training on every modality cost
anything on the shared tasks?

One YAML names the store, the tasks (evaluation targets and the metrics shown) and the rows, each a training run
with the same budget (model, token budgets, steps, batch, optimiser: ``train``):

* a row over every modality the store holds (4M-21), one over a subset (4M-7's modality set), and
* specialists: one model per task, trained only to map the row's inputs to that task,

then the **tokenizer bound** (decode(encode(truth)) on the same samples: what token prediction cannot beat), an
**ensembling** row (N draws fused per sample) and a **box-prompted** row (``prompted``: the paper's instance and
pose evaluation, each true item's box given in the target sequence and only its tokens predicted:
:func:`fourm_core.evaluation.prompted.evaluate_prompted`; SAM instances get box-prompted mask AP there). Every model
is evaluated by :func:`fourm_core.evaluation.evaluate` on the held-out split, and the result is written as JSON and
a markdown table; beside the metrics the YAML names, each task's columns carry the metrics other work reports when a
row produced them (:data:`COMPARABLE`: COCO box / mask AP, MPJPE, PA-MPJPE), and a model's empty cell of a task it
was scored on gets a note under the table saying why. Runs are kept in ``out_dir``: a second call reuses finished
models (their ``final/``) and trains only what is missing, so an interrupted benchmark resumes.

Modality names live in the YAML (``configs/bench/table1.yaml``), never here.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Collection
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["QualityBenchConfig", "RowConfig", "load_quality_config", "run_quality_bench"]

_STRICT = ConfigDict(extra="forbid")


class RowConfig(BaseModel):
    """One row of the table. ``modalities``: the modalities its model trains on (``None``: all the store has);
    ``specialists``: instead, one model per listed task, trained on ``inputs`` -> that task only (the row shows
    each specialist's score on its own task)."""

    model_config = _STRICT
    name: str
    modalities: list[str] | None = None
    specialists: list[str] | None = None
    #: the inputs of a specialist and of every row's evaluation (default: the store's pixel modalities)
    inputs: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> RowConfig:
        if self.modalities is not None and self.specialists is not None:
            raise ValueError(f"row {self.name!r}: give modalities or specialists, not both")
        return self


class EnsembleConfig(BaseModel):
    """The ensembling row: the model of row ``row`` evaluated with ``n`` draws per sample, fused."""

    model_config = _STRICT
    row: str
    n: int = Field(10, ge=2)
    temperature: float = Field(0.7, gt=0.0)
    steps: int = Field(1, ge=1)


class PromptedConfig(BaseModel):
    """The box-prompted row: the model of row ``row`` queried with every held-out true item's box."""

    model_config = _STRICT
    row: str


class QualityBenchConfig(BaseModel):
    """The whole benchmark (see the module docstring). ``train``: :class:`~fourm_core.training.config.RunConfig`
    fields shared by every row (``model``, ``schedule``, ``engine``, budgets, ``optim``); ``tasks``: modality ->
    the metrics shown in the table (all are kept in the JSON); ``evaluation``:
    :class:`~fourm_core.evaluation.EvalConfig` fields (``samples`` defaults to ``val_samples``)."""

    model_config = _STRICT
    store: str
    tokenizers: str
    vocabulary: str
    out_dir: str
    val_samples: int = Field(64, ge=1)
    seed: int = 0
    train: dict[str, Any] = Field(default_factory=dict)
    tasks: dict[str, list[str]] = Field(..., min_length=1)
    rows: list[RowConfig] = Field(..., min_length=1)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    ensemble: EnsembleConfig | None = None
    prompted: PromptedConfig | None = None

    @model_validator(mode="after")
    def _names(self) -> QualityBenchConfig:
        names = [r.name for r in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"row names must be unique, got {names}")
        if self.ensemble is not None and self.ensemble.row not in names:
            raise ValueError(f"ensemble.row {self.ensemble.row!r} is not a row ({names})")
        if self.prompted is not None and self.prompted.row not in names:
            raise ValueError(f"prompted.row {self.prompted.row!r} is not a row ({names})")
        for row in self.rows:
            unknown = sorted(set(row.specialists or ()) - set(self.tasks))
            if unknown:
                raise ValueError(f"row {row.name!r}: specialists for {unknown}, which are not tasks")
        return self


def load_quality_config(path: str | os.PathLike[str], **overrides: Any) -> QualityBenchConfig:
    """Read the YAML; ``overrides`` are dotted keys (``train.schedule.steps=20``) set before validation."""
    from fourm_core.errors import read_yaml
    from fourm_core.training.config import apply_overrides

    data = read_yaml(path, "benchmark config") or {}
    return QualityBenchConfig.model_validate(apply_overrides(data, overrides))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _run_config(bench: QualityBenchConfig, out: Path, modalities: list[str] | None, mixture: str | None) -> Any:
    from fourm_core.training.config import RunConfig

    data = {
        **bench.train,
        "out_dir": str(out),
        "seed": bench.seed,
        "vocabulary": bench.vocabulary,
        "tokenizers": bench.tokenizers,
        "datasets": [
            {
                "name": "store",
                "store": bench.store,
                "val_samples": bench.val_samples,
                "modalities": modalities,
                "mixture": mixture,
            }
        ],
    }
    return RunConfig.model_validate(data)


def _specialist_mixture(registry: Any, preset: str, inputs: list[str], task: str, path: Path) -> str:
    """A one-component mixture: the inputs visible (alpha 1 each), the task the only target."""
    table = {registry.get(m).model_key(preset): {"input_alphas": [1.0], "target_alphas": [0.0]} for m in inputs}
    table[registry.get(task).model_key(preset)] = {"input_alphas": [0.0], "target_alphas": [1.0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    return str(path)


def _pixel_modalities(registry: Any, store_path: str) -> list[str]:
    """The store's pixel modalities: the default inputs of specialists and evaluations."""
    from fourm_core.spec import ModalityKind
    from fourm_core.storage.store import AlignedStore

    parts = AlignedStore.open(store_path, mode="r").parts()
    found = [m.name for m in registry.modalities() if m.spec.kind == ModalityKind.PIXELS and f"{m.name}/raw" in parts]
    if not found:
        raise ValueError(f"{store_path} holds no pixel modality: give each row its inputs")
    return found


def _trained(config: Any, registry: Any, log: Callable[[str], None]) -> tuple[Path, float]:
    """Train (or reuse a finished run of the same config); returns the final folder and training seconds."""
    from fourm_core.training.engine import config_fingerprint, train

    out = Path(config.out_dir)
    marker = out / "bench-run.json"
    fingerprint = config_fingerprint(config)
    if (out / "final" / "model.safetensors").is_file() and marker.is_file():
        record = json.loads(marker.read_text())
        if record.get("fingerprint") == fingerprint and record.get("steps") is not None:
            log(f"reusing {out / 'final'} ({record['steps']} steps, {record['seconds']:.0f} s)")
            return out / "final", float(record["seconds"])
    start = time.perf_counter()
    result = train(config, registry)
    seconds = time.perf_counter() - start
    marker.write_text(json.dumps({"fingerprint": fingerprint, "steps": result.steps, "seconds": seconds}) + "\n")
    return out / "final", seconds


def run_quality_bench(
    bench: QualityBenchConfig, registry: Any = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train and evaluate every row; returns ``{"rows": {row: {task: scores}}, "markdown": table, ...}``."""
    import fourm_core as fm
    from fourm_core.evaluation import EvalConfig, evaluate, scores_markdown
    from fourm_core.registry import Registry

    registry = registry or Registry()
    preset = bench.train.get("model", {}).get("preset", "tiny")
    out_dir = Path(bench.out_dir)
    eval_fields = {"samples": bench.val_samples, **bench.evaluation}
    tasks = list(bench.tasks)
    rows: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    timings: dict[str, float] = {}
    pixels = _pixel_modalities(registry, bench.store)
    for row in bench.rows:
        row_dir = out_dir / _slug(row.name)
        inputs = row.inputs or pixels
        plans: list[tuple[str, list[str] | None, str | None, list[str]]] = []
        if row.specialists is not None:
            for task in row.specialists:
                mixture = _specialist_mixture(registry, preset, inputs, task, row_dir / task / "mixture.json")
                plans.append((f"{row.name} / {task}", [*inputs, task], mixture, [task]))
        else:
            plans.append((row.name, row.modalities, None, tasks))
        scores: dict[str, Any] = {}
        for label, modalities, mixture, targets in plans:
            sub = row_dir / _slug(targets[0]) if row.specialists is not None else row_dir
            config = _run_config(bench, sub, modalities, mixture)
            log(
                f"[{label}] training {config.schedule.steps or config.schedule.total_tokens} "
                f"{'steps' if config.schedule.steps else 'tokens'}"
            )
            final, seconds = _trained(config, registry, log)
            timings[f"train {label}"] = round(seconds, 1)
            model = fm.FourM.from_pretrained(final, registry=registry)
            predicted = [t for t in targets if registry.get(t).model_key(model.preset) in model.keys]
            if not predicted:
                log(f"[{label}] predicts none of {targets}: nothing to evaluate (is the store pre-tokenised?)")
                continue
            start = time.perf_counter()
            got = evaluate(model, bench.store, EvalConfig(**{**eval_fields, "inputs": inputs, "targets": predicted}))
            timings[f"evaluate {label}"] = round(time.perf_counter() - start, 1)
            scores.update(got)
            if row.specialists is None:
                models[row.name] = model
            log(f"[{label}] " + ", ".join(f"{t} {_short(s.model, bench.tasks[t])}" for t, s in got.items()))
        rows[row.name] = scores
    if bench.ensemble is not None:
        e = bench.ensemble
        start = time.perf_counter()
        # targets that cannot be ensembled (item sequences have no per-sample fusion) are skipped, not errors
        targets = [t for t in tasks if t in rows[e.row]]
        fields = {**eval_fields, "targets": targets, "ensemble": e.n, "temperature": e.temperature, "steps": e.steps}
        fields["strict"] = False
        got = evaluate(models[e.row], bench.store, EvalConfig(**fields))
        timings[f"evaluate {e.row} x{e.n}"] = round(time.perf_counter() - start, 1)
        rows[f"{e.row}, ensemble of {e.n}"] = got
    if bench.prompted is not None and bench.prompted.row in models:
        label = f"{bench.prompted.row}, box-prompted"
        start = time.perf_counter()
        row = next(r for r in bench.rows if r.name == bench.prompted.row)
        inputs = row.inputs or pixels
        rows[label] = _prompted_scores(models[row.name], row.name, inputs, bench, eval_fields, rows[row.name], log)
        timings[f"evaluate {label}"] = round(time.perf_counter() - start, 1)
    columns = _columns(bench.tasks, rows)
    prompted = {f"{bench.prompted.row}, box-prompted"} if bench.prompted is not None else set()
    notes = _empty_columns(columns, rows, prompted)
    markdown = scores_markdown(rows, columns) + "".join(f"\n{n}" for n in notes) + ("\n" if notes else "")
    return {
        "date": date.today().isoformat(),
        "machine": {"arch": platform.machine(), "cores": os.cpu_count()},
        "config": bench.model_dump(mode="json"),
        "rows": {name: {t: _record(s) for t, s in scores.items()} for name, scores in rows.items()},
        "timings_s": timings,
        "markdown": markdown,
        "notes": notes,
    }


#: Metrics other work reports, shown beside a task's configured columns whenever some row produced them (COCO AP of
#: item boxes and masks, MPJPE / PA-MPJPE of matched people), so the table carries them without each YAML listing
#: them; the greedy-matching columns the YAML names stay.
COMPARABLE = ("box_ap", "box_ap50", "mask_ap", "mask_ap50", "mpjpe_mm", "pa_mpjpe_mm")


def _columns(tasks: dict[str, list[str]], rows: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The table's columns: each task's configured metrics, then the :data:`COMPARABLE` ones some row has."""
    out = {}
    for task, names in tasks.items():
        found = {k for scores in rows.values() if task in scores for k in (*scores[task].model, *scores[task].bound)}
        out[task] = [*names, *(k for k in COMPARABLE if k in found and k not in names)]
    return out


def _empty_columns(
    columns: dict[str, list[str]],
    rows: dict[str, dict[str, Any]],
    prompted: Collection[str] = (),
) -> list[str]:
    """One line per table cell of a model left empty while its task was scored, and per task no row predicts,
    saying why (an item metric needs a matched item, AP a true item among the held-out samples), so a "-" is
    explained rather than silent. Bound cells of recall, precision and box AP are empty by construction; the rows
    named in ``prompted`` were queried with the true boxes, so their detection cells are empty by construction too."""
    notes = []
    for task, names in columns.items():
        if not any(task in scores for scores in rows.values()):
            notes.append(f"- {task}: no row predicts it (not trained on it, or its tokens are not in the store)")
            continue
        for row, scores in rows.items():
            if task not in scores:
                continue
            model = scores[task].model
            missing = [k for k in names if k not in model]
            if not missing:
                continue
            if row in prompted:
                why = "box-prompted: the true boxes are given, so detection metrics do not apply"
            elif "matched" in model and "parse_rate" in model:
                matched, rate = int(model["matched"]), model["parse_rate"]
                why = f"{matched} generated items matched a true one at parse rate {rate:.2f}"
            else:
                why = "the target does not report them"
            notes.append(f"- {row} / {task} {', '.join(missing)}: not reported ({why})")
    return notes


def _prompted_scores(
    model: Any,
    row: str,
    inputs: list[str],
    bench: QualityBenchConfig,
    eval_fields: dict[str, Any],
    scored: dict[str, Any],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The box-prompted row: every task of ``bench.prompted.row`` whose serializer writes box prompts, scored by
    :func:`~fourm_core.evaluation.prompted.evaluate_prompted` (tasks without prompts are left out, with a log line)."""
    from fourm_core.evaluation import EvalConfig
    from fourm_core.evaluation.common import TaskScores
    from fourm_core.evaluation.prompted import evaluate_prompted

    targets = [t for t in bench.tasks if t in scored]
    fields = {**eval_fields, "inputs": inputs, "targets": targets, "strict": False}
    fields.pop("ensemble", None)
    try:
        got = evaluate_prompted(model, bench.store, EvalConfig(**fields))
    except ValueError as exc:  # no target with box prompts: the row stays empty, said once
        log(f"[{row}, box-prompted] {exc}")
        return {}
    out: dict[str, Any] = {}
    for task, result in got.items():
        if task == "skipped":
            continue
        key = model.registry.get(task).model_key(model.preset)
        out[task] = TaskScores(task, key, result["samples"], result["model"], result["bound"], result["seconds"])
        log(f"[{row}, box-prompted] {task} {_short(result['model'], [*bench.tasks[task], 'mask_ap'])}")
    return out


def _short(metrics: dict[str, float], names: list[str]) -> str:
    return " ".join(f"{k}={metrics[k]:.3f}" for k in names if k in metrics)


def _record(scores: Any) -> dict[str, Any]:
    return {"key": scores.key, "n": scores.n, "model": scores.model, "bound": scores.bound, "seconds": scores.seconds}
