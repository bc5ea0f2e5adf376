"""What a user configures for ``fourm train``: one YAML file, validated by pydantic.

The same file scales from a 2-core CPU to a GPU cluster by changing the model size, the batch and the launcher
(``--nproc``); everything a run depends on is in it, so a checkpoint records it and a resume can refuse a
different one. Sizes and recipes are the official ones (:data:`fourm_core.model.network.SIZES`); budgets, schedule and
optimiser follow the 4M-21 recipe (AdamW 0.9/0.95, weight decay 0.05, linear warmup then cosine decay, in tokens).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fourm_core.model.config import FourMConfig
from fourm_core.model.network import RECIPES, SIZES

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "EngineConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "apply_overrides",
    "load_run_config",
    "validate_config",
]

_STRICT = ConfigDict(extra="forbid")
#: what ``model.overrides`` may set: the network's own fields except the key table, which the data decides
#: (:func:`~fourm_core.model.config.fourm_config` replaces it after the overrides, so setting it would be ignored)
OVERRIDABLE = tuple(name for name in FourMConfig.model_fields if name != "keys")
_M = TypeVar("_M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used, said in one line naming the file and the key (a user mistake)."""


class ModelConfig(BaseModel):
    """The FourM to train: an official size and recipe, any constructor key overridden (``dim``, depths, ...).

    With ``init``, sizes and recipe flags the config does not set (``size`` / ``recipe`` absent from the file,
    no override) are the checkpoint's; those it sets must match the checkpoint's trunk (see
    :mod:`fourm_core.training.warmstart`)."""

    model_config = _STRICT
    size: str = "tiny"
    recipe: str = "swiglu_nobias"
    #: modality layout preset of the plugins (token grid sizes, sequence lengths): must match the stores
    preset: str = "tiny"
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: start from these weights: a hub id (``EPFL-VILAB/4M-21_B``), a folder in the hub layout (official or fourm
    #: ``config.json`` + ``model.safetensors``), a ``.safetensors`` file with the config in its metadata, or a fourm
    #: run folder. Its modality keys may differ from the run's: shared ones load, new ones start fresh
    init: str | None = None
    #: the hub revision (branch, tag, commit) of a hub id ``init``
    init_revision: str | None = None
    #: restrict the model to these model keys (default: every key some dataset provides)
    keys: list[str] | None = None

    @field_validator("overrides")
    @classmethod
    def _network_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """A misspelt override (``num_head``) would only fail when the network is built, after the stores are
        opened; refuse it here, like any other unknown key."""
        for key in overrides:
            if key not in OVERRIDABLE:
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}' (not a FourMConfig field)",
                    {"key": key, "valid": ",".join(OVERRIDABLE)},
                )
        return overrides

    @model_validator(mode="after")
    def _known(self) -> ModelConfig:
        if self.size not in SIZES:
            raise ValueError(f"model.size {self.size!r} is not one of {sorted(SIZES)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"model.recipe {self.recipe!r} is not one of {sorted(RECIPES)}")
        return self


class DatasetConfig(BaseModel):
    """One training dataset: a store (pre-tokenised images + raw sequences) or a text corpus for text-only
    co-training. Each may have its own masking mixture (official ml-4m YAML or ours); without one, the default
    all-to-all mixture over the keys it has."""

    model_config = _STRICT
    name: str
    weight: float = Field(1.0, gt=0)
    #: a store made by ``fourm data ...`` and pre-tokenised by ``fourm data tokenize``: a path or an fsspec URL
    #: (``s3://bucket/x.zarr``)
    store: str | None = None
    #: fsspec storage options of a URL store (e.g. ``{endpoint_url: http://...}``); default: the JSON object in
    #: ``FOURM_STORAGE_OPTIONS``, else none
    storage_options: dict[str, Any] | None = None
    #: text files, one document per line (language co-training, as 4M-21 with C4)
    text: list[str] | None = None
    #: the modality text documents become (a caption-like sequence modality)
    text_modality: str | None = None
    mixture: str | None = None
    #: only these modalities of the store (default: every modality it holds in its training form)
    modalities: list[str] | None = None
    #: the last ``val_samples`` samples of a store are held out for validation (never trained on)
    val_samples: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        if (self.store is None) == (self.text is None):
            raise ValueError(f"dataset {self.name!r}: give exactly one of store / text")
        if self.text is not None and not self.text_modality:
            raise ValueError(f"dataset {self.name!r}: a text dataset needs text_modality")
        if self.text is not None and self.val_samples:
            raise ValueError(f"dataset {self.name!r}: validation samples come from stores only")
        return self


class OptimConfig(BaseModel):
    """AdamW as in the paper; ``lr`` absolute, or ``blr`` scaled by global batch / 256 (ml-4m's rule)."""

    model_config = _STRICT
    lr: float | None = Field(None, gt=0)
    blr: float = Field(1e-4, gt=0)
    min_lr: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = Field(0.05, ge=0)
    clip_grad: float | None = Field(1.0, gt=0)


class ScheduleConfig(BaseModel):
    """Length of the run and warmup, in tokens (input + target budgets x global batch, as ml-4m) or steps."""

    model_config = _STRICT
    steps: int | None = Field(None, gt=0)
    total_tokens: float | None = Field(None, gt=0)
    warmup_tokens: float | None = Field(None, ge=0)
    warmup_steps: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _length(self) -> ScheduleConfig:
        if (self.steps is None) == (self.total_tokens is None):
            raise ValueError("schedule: give exactly one of steps / total_tokens")
        if self.warmup_tokens is not None and self.warmup_steps is not None:
            raise ValueError("schedule: give at most one of warmup_tokens / warmup_steps")
        return self


class EngineConfig(BaseModel):
    """DeepSpeed settings: ZeRO stage, precision, micro-batch per process, accumulation, CPU threads."""

    model_config = _STRICT
    micro_batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    zero_stage: Literal[0, 1, 2, 3] = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    #: torch threads per process on CPU (default: cores / processes)
    threads: int | None = Field(None, gt=0)
    #: dense peak GFLOP/s of one process for the MFU (default: the GPU's datasheet peak for the precision, or the
    #: measured matmul peak of the device; see :mod:`fourm_core.training.device`)
    peak_gflops: float | None = Field(None, gt=0)
    #: where each process trains: ``cuda`` (refused at start without a GPU), ``cpu``, or ``auto`` (cuda if present)
    device: Literal["auto", "cuda", "cpu"] = "auto"
    #: ``out_dir`` is a folder per node (node-local disk) instead of one all nodes share: each node keeps its own
    #: checkpoints there, rank 0's node the log and ``final/`` (see :mod:`fourm_core.training.node_checkpoints`)
    node_local_checkpoints: bool = False
    #: worker processes that build the next micro-batches while the step runs (:mod:`fourm_core.training.prefetch`);
    #: 0 builds each one in the training process when the step needs it. The batches are the same either way
    loader_workers: int = Field(0, ge=0)
    #: micro-batches each loader worker keeps ready ahead of the step
    prefetch: int = Field(2, gt=0)
    #: ``torch.compile`` the network in place (through DeepSpeed's ``engine.compile``) before the first step: faster
    #: steps after a first one that compiles; state-dict keys are unchanged, so checkpoints load either way
    compile: bool = False
    #: the ``torch.compile`` backend (``inductor``, torch's default, needs a C++ compiler on CPU and Triton on CUDA;
    #: ``aot_eager`` traces without generating code: a cheap check that the model compiles)
    compile_backend: str = "inductor"

    @model_validator(mode="after")
    def _compile_zero(self) -> EngineConfig:
        """ZeRO-3 keeps each parameter partitioned (size 0) outside its forward hooks, which torch.compile does not
        trace: dynamo fails on the first step with a broadcast error (DeepSpeed 0.19, measured); say so at start."""
        if self.compile and self.zero_stage == 3:
            raise ValueError(
                "compile works with zero_stage 0, 1 or 2, not 3 (ZeRO-3's partitioned parameters are not traceable "
                "by torch.compile): set compile: false or a lower zero_stage"
            )
        return self


class RunConfig(BaseModel):
    """A whole training run (the ``fourm train --config`` file)."""

    model_config = _STRICT
    out_dir: str
    seed: int = 0
    vocabulary: str
    #: the trained tokenizer directory the stores were pre-tokenised with, or ``official`` (the published
    #: tokenizers); not used in training, but recorded with the exported model (``final/fourm.json``) so generation
    #: finds it (``FourM.from_pretrained``)
    tokenizers: str | None = None
    datasets: list[DatasetConfig] = Field(..., min_length=1)
    #: input / target token budgets per sample: one number or an inclusive [low, high] range
    input_tokens: int | tuple[int, int] = 128
    target_tokens: int | tuple[int, int] = 128
    #: which pre-tokenised crop to read: "random" (one per sample position) or a fixed index
    crop: int | Literal["random"] = "random"
    loss_type: Literal["mod", "token"] = "mod"
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig
    engine: EngineConfig = EngineConfig()
    log_every: int = Field(10, gt=0)
    eval_every: int | None = Field(None, gt=0)
    checkpoint_every: int | None = Field(None, gt=0)
    #: checkpoints kept on disk (oldest deleted first)
    keep_checkpoints: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _names(self) -> RunConfig:
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must be unique, got {names}")
        return self

    def budget(self, which: str) -> tuple[int, int]:
        """``(low, high)`` of the input or target token budget."""
        value = self.input_tokens if which == "input" else self.target_tokens
        return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def load_run_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read a YAML run config; ``overrides`` are dotted keys (``schedule.steps=20``) applied before validation.
    Relative paths in the file are relative to the working directory (configs name ``demo/world.zarr``).

    Every mistake is one :class:`ConfigError` line naming the file and the key: an unknown key says which valid
    key is nearest (``unknown key 'optim.lrr' in run.yaml: did you mean 'optim.lr'?``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such run config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config is a mapping of keys, got {type(data).__name__}")
    return validate_config(RunConfig, apply_overrides(data, overrides, str(path)), str(path), overrides)


def validate_config(model: type[_M], data: Mapping[str, Any], source: str, overrides: Iterable[str] = ()) -> _M:
    """``model.model_validate(data)`` with pydantic's report turned into one :class:`ConfigError` line: unknown keys
    first (with the nearest valid name, by :func:`difflib.get_close_matches`), then the other problems, each with
    its dotted key. ``source`` names the file; keys set by ``overrides`` (dotted) are said to come from ``--set``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    given = set(overrides)
    unknown = [e for e in errors if e["type"] in ("extra_forbidden", "unknown_key")]
    if unknown:
        raise ConfigError("; ".join(_unknown_key(model, e, source, given) for e in unknown)) from None
    problems = []
    for e in errors:
        message = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] not in ("value_error", "assertion_error") and "input" in e and not isinstance(e["input"], dict):
            message += f" (got {e['input']!r})"
        key = _dotted(e["loc"])
        problems.append(f"{key}: {message}" if key else message)
    raise ConfigError(f"{source}: {'; '.join(problems)}") from None


def _unknown_key(model: type[BaseModel], error: Any, source: str, given: set[str]) -> str:
    """``unknown key 'a.b' in FILE: did you mean 'a.c'?`` (or the valid keys when none is close)."""
    loc = tuple(error["loc"])
    if error["type"] == "unknown_key":  # a key of a free mapping (model.overrides) that the model does not take
        ctx = error.get("ctx") or {}
        loc, valid = (*loc, ctx.get("key", "?")), str(ctx.get("valid", "")).split(",")
    else:
        valid = _fields_at(model, loc[:-1])
    key, parent = _dotted(loc), _dotted(loc[:-1])
    where = "--set" if key in given else source
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    if close:
        return f"unknown key {key!r} in {where}: did you mean {'.'.join(filter(None, (parent, close[0])))!r}?"
    return f"unknown key {key!r} in {where}: expected one of {', '.join(valid)}"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc`` (``("datasets", 0)`` -> DatasetConfig's fields)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(str(part))
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``list[DatasetConfig]``, ``ModelConfig | None``), if any."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def _dotted(loc: Iterable[Any]) -> str:
    """``("datasets", 0, "store")`` -> ``datasets[0].store``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], source: str = "the config") -> dict[str, Any]:
    """Set dotted keys (``schedule.steps``) in a config mapping, creating missing levels; returns ``data``."""
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: i + 1])
                raise ConfigError(f"--set {dotted}: {where!r} in {source} is {node!r}, not a mapping of keys")
        node[leaf] = value
    return data
