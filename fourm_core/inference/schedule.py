"""Generation schedules: which target keys to generate, in which order, and how (ml-4m
``build_chained_generation_schedules``, as configuration instead of a string-building helper).

A :class:`GenerationSchedule` is an ordered list of :class:`StepConfig` s, one per target key: the first target is
generated from the given inputs, every later one also sees what the earlier ones produced (a chain such as
sequence -> global tokens -> image tokens). It loads from YAML or a Python list and is checked against the model's
key table *before* any compute (:meth:`GenerationSchedule.validate_for`), so a typo or an impossible scheme
fails with the key and the problem named instead of a shape error deep in the decoder.

Token counts per step (:func:`tokens_per_step`) and temperature per step (:func:`temperature_at`) live here too,
so they can be tested and plotted without a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "GenerationSchedule",
    "ScheduleError",
    "StepConfig",
    "default_schedule",
    "load_schedule",
    "temperature_at",
    "tokens_per_step",
]


class ScheduleError(ValueError):
    """A schedule that cannot run on this model; the message names the key and the problem."""


class StepConfig(BaseModel):
    """How one target key is generated.

    ``num_steps`` / ``token_schedule`` only matter for MaskGIT and ROAR (an autoregressive step decodes one token
    per decoder call until ``[EOS]`` or ``max_tokens``). ``temperature_schedule``: ``constant``; ``linear`` decays
    to 0 with the fraction of tokens already decoded (ml-4m); ``onex`` is ml-4m's ``onex:{min}:{power}``
    shape, ``min_temperature + (temperature - min_temperature) / (1 + i) ** onex_power`` at step i. ``top_k``: an
    int, or a float in (0, 1) as a fraction of the vocabulary (ml-4m accepts both). ``cfg_scale`` 1 is unguided;
    ``cfg_conditions`` lists the input keys the unconditional pass drops (``None``: every conditioning key).

    ``cfg_weights``: multi-condition guidance (composable-diffusion style, ml-4m ``generate_multi_guided``):
    ``{condition key: weight}`` gives ``uncond + sum_i w_i * (cond_i - uncond)``, where ``uncond`` drops every
    weighted key and ``cond_i`` keeps only key ``i`` of them (unweighted inputs stay in every pass). One key with
    weight ``w`` equals single guidance with ``cfg_conditions=[key], cfg_scale=w``. It replaces ``cfg_scale`` /
    ``cfg_conditions``, which must then keep their defaults.
    """

    model_config = ConfigDict(extra="forbid")

    target: str
    #: a registered generation scheme (:mod:`fourm_core.inference.schemes`): maskgit, roar, autoregressive ...
    scheme: str
    num_steps: int = Field(1, ge=1)
    token_schedule: Literal["cosine", "linear"] = "cosine"
    temperature: float = Field(1.0, ge=0.0)
    temperature_schedule: Literal["constant", "linear", "onex"] = "constant"
    min_temperature: float = Field(0.0, ge=0.0)
    onex_power: float = Field(1.0, gt=0.0)
    top_k: int | float | None = None
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    cfg_scale: float = 1.0
    cfg_conditions: list[str] | None = None
    cfg_weights: dict[str, float] | None = None
    #: autoregressive only: stop after this many tokens (default and cap: the key's ``max_tokens``)
    max_tokens: int | None = Field(None, ge=1)

    @field_validator("scheme")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        from fourm_core.inference.schemes import get_scheme

        get_scheme(value)  # an unknown name lists the known ones
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | float | None) -> int | float | None:
        if value is None:
            return value
        if isinstance(value, float) and not value.is_integer():
            if not 0.0 < value < 1.0:
                raise ValueError(f"top_k {value}: an int >= 1 or a vocabulary fraction in (0, 1)")
            return value
        if value < 1:
            raise ValueError(f"top_k {value}: must be >= 1")
        return int(value)

    @model_validator(mode="after")
    def _one_guidance(self) -> StepConfig:
        if self.cfg_weights is not None:
            if not self.cfg_weights:
                raise ValueError("cfg_weights is empty: give {condition key: weight} or leave it out")
            if self.cfg_scale != 1.0 or self.cfg_conditions is not None:
                raise ValueError("cfg_weights replaces cfg_scale / cfg_conditions; give one or the other")
        return self


class GenerationSchedule(BaseModel):
    """Ordered steps; each target key appears once and becomes an input of every later step.

    ``cfg_grow``: guidance grows with finished targets (ml-4m ``cfg_grow_conditioning``): every target generated
    by an earlier step joins the guided conditions of each later guided step: the keys a single-guidance step's
    unconditional pass drops (already all of them when ``cfg_conditions`` is ``None``), or a new weighted condition
    of weight ``cfg_grow_weight`` in a multi-condition step. So a chain caption -> global -> image tokens guides
    the image tokens towards the generated global tokens as well as the caption.
    """

    model_config = ConfigDict(extra="forbid")

    steps: list[StepConfig] = Field(min_length=1)
    cfg_grow: bool = False
    cfg_grow_weight: float = 1.0

    @classmethod
    def from_list(cls, steps: Sequence[Mapping[str, Any] | StepConfig], **options: Any) -> GenerationSchedule:
        """Steps as dicts or :class:`StepConfig` s; ``options``: schedule fields (``cfg_grow`` ...)."""
        return cls(steps=[s if isinstance(s, StepConfig) else StepConfig(**s) for s in steps], **options)

    def guided_conditions(self, index: int, inputs: Iterable[str]) -> tuple[frozenset[str], dict[str, float]]:
        """What step ``index`` guides on, given the user's input keys: ``(dropped keys, {})`` for single guidance
        (empty when unguided) or ``(frozenset(), {key: weight})`` for multi-condition guidance, with the earlier
        targets added under ``cfg_grow``."""
        step = self.steps[index]
        grown = [s.target for s in self.steps[:index]] if self.cfg_grow else []
        if step.cfg_weights is not None:
            weights = dict(step.cfg_weights)
            for key in grown:
                weights.setdefault(key, self.cfg_grow_weight)
            return frozenset(), weights
        if step.cfg_scale == 1.0:
            return frozenset(), {}
        if step.cfg_conditions is None:
            return frozenset([*inputs, *(s.target for s in self.steps[:index])]), {}
        return frozenset([*step.cfg_conditions, *grown]), {}

    @classmethod
    def from_yaml(cls, source: str | Path) -> GenerationSchedule:
        """A YAML file (or YAML text): a list of steps, or a mapping with ``steps``."""
        is_file = isinstance(source, Path) or _is_file(source)
        text = Path(source).read_text() if is_file else str(source)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # name the file: the parser only says "line 2, column 1"
            where = f"{source}: not a valid schedule YAML" if is_file else "the schedule is not valid YAML"
            raise ScheduleError(f"{where} ({' '.join(str(exc).split())})") from None
        if isinstance(data, Mapping):
            return cls(**data)
        if isinstance(data, list):
            return cls.from_list(data)
        raise ScheduleError(f"a schedule is a list of steps or a mapping with 'steps', got {type(data).__name__}")

    @property
    def targets(self) -> list[str]:
        return [s.target for s in self.steps]

    def validate_for(self, keys: Any, inputs: Iterable[str] = ()) -> None:
        """Raise :class:`ScheduleError` naming the key and the problem unless every step can run: a known key
        that the model can predict, a scheme that fits its kind (each scheme checks its own rules, e.g. no more
        steps than tokens), each target once and not already given, guidance conditions that are inputs by then.
        ``keys``: the model's :class:`~fourm_core.keys.KeyTable` (or a network, or an official ``modality_info``)."""
        from fourm_core.inference.schemes import get_scheme
        from fourm_core.inference.tables import key_table_of

        table = key_table_of(keys)
        known = set(inputs)
        for key in known:
            if key not in table:
                raise ScheduleError(f"input {key!r}: unknown key (model keys: {sorted(table)})")
            if not table[key].input:
                raise ScheduleError(f"input {key!r}: the model takes this key as a target only")
        for i, step in enumerate(self.steps):
            key, where = step.target, f"step {i} (target {step.target!r})"
            if key not in table:
                raise ScheduleError(f"{where}: unknown key (model keys: {sorted(table)})")
            info = table[key]
            if not info.target or not info.is_tokens:
                raise ScheduleError(f"{where}: input-only key (type {info.kind.value!r}) cannot be a target")
            if key in known:
                raise ScheduleError(f"{where}: already given as an input or generated by an earlier step")
            get_scheme(step.scheme).check(step, info, where)
            for cond in [*(step.cfg_conditions or ()), *(step.cfg_weights or {})]:
                if cond not in known:
                    raise ScheduleError(f"{where}: guidance condition {cond!r} is not an input at this step")
            known.add(key)


def load_schedule(source: GenerationSchedule | Sequence[Mapping[str, Any]] | str | Path) -> GenerationSchedule:
    """A schedule from a schedule, a list of step dicts, a YAML path or YAML text."""
    if isinstance(source, GenerationSchedule):
        return source
    if isinstance(source, (str, Path)):
        return GenerationSchedule.from_yaml(source)
    return GenerationSchedule.from_list(source)


def default_schedule(
    keys: Any,
    targets: Sequence[Any],
    steps: int = 8,
    temperature: float = 0.5,
    top_p: float | None = None,
) -> GenerationSchedule:
    """One step per target (a model key, or anything with a ``key``), in the order given, by the first scheme
    that decodes its kind (:func:`~fourm_core.inference.schemes.default_scheme`): parallel schemes get ``steps``
    (at most one per token) and a linearly decaying temperature (ml-4m's defaults), autoregressive decoding
    ``temperature``. ``keys``: the model's key table (or a network)."""
    from fourm_core.inference.schemes import default_scheme
    from fourm_core.inference.tables import key_table_of

    table = key_table_of(keys)
    out = []
    for target in targets:
        info = table[getattr(target, "key", target)]
        scheme = default_scheme(info)
        if info.is_sequence:
            out.append(StepConfig(target=info.key, scheme=scheme, temperature=temperature, top_p=top_p))
        else:
            n = max(1, min(steps, info.max_tokens))
            out.append(
                StepConfig(
                    target=info.key,
                    scheme=scheme,
                    num_steps=n,
                    temperature=temperature,
                    temperature_schedule="linear",
                    top_p=top_p,
                )
            )
    return GenerationSchedule(steps=out)


def _is_file(text: str) -> bool:
    try:
        return "\n" not in text and Path(text).is_file()
    except OSError:
        return False


def tokens_per_step(num_tokens: int, num_steps: int, kind: str = "cosine") -> list[int]:
    """How many tokens each of ``num_steps`` steps fixes; all >= 1, summing to ``num_tokens``.

    ``cosine`` (MaskGIT): the still-masked count follows ``N * cos(pi/2 * t)``, so early steps fix few tokens
    (when the model knows least) and later ones many. ``linear``: equal shares, larger ones first.
    """
    if not 1 <= num_steps <= num_tokens:
        raise ScheduleError(f"{num_steps} steps for {num_tokens} tokens")
    if kind == "linear":
        base, extra = divmod(num_tokens, num_steps)
        return [base + (1 if i < extra else 0) for i in range(num_steps)]
    if kind != "cosine":
        raise ScheduleError(f"unknown token schedule {kind!r}")
    remaining = [round(num_tokens * math.cos(math.pi / 2 * i / num_steps)) for i in range(num_steps + 1)]
    remaining[0], remaining[-1] = num_tokens, 0
    counts = [max(1, a - b) for a, b in zip(remaining[:-1], remaining[1:])]
    while sum(counts) > num_tokens:  # steps raised to 1 are paid for by the largest steps
        counts[counts.index(max(counts))] -= 1
    return counts


def temperature_at(step: StepConfig, index: int, total: int, done_fraction: float | None = None) -> float:
    """The temperature of step ``index`` of ``total`` (tokens for autoregressive, steps otherwise).

    ``done_fraction``: share of the target's tokens fixed before this step (``linear`` decays with it; default
    ``index / total``)."""
    t0 = step.temperature
    if step.temperature_schedule == "constant":
        return t0
    if step.temperature_schedule == "linear":
        done = index / max(total, 1) if done_fraction is None else done_fraction
        return max(t0 * (1.0 - done), 1e-9)
    return step.min_temperature + (t0 - step.min_temperature) / (1 + index) ** step.onex_power
