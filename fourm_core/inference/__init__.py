"""Generation: schedules (:mod:`.schedule`), the sampler with MaskGIT / ROAR / cached autoregressive decoding and
classifier-free guidance (:mod:`.sampler`), and majority-vote ensembling (:mod:`.ensemble`)."""

from fourm_core.inference.ensemble import ensemble
from fourm_core.inference.sampler import GenerationSampler, filter_logits, sample_tokens
from fourm_core.inference.schedule import (
    GenerationSchedule,
    ScheduleError,
    StepConfig,
    load_schedule,
    temperature_at,
    tokens_per_step,
)

__all__ = [
    "GenerationSampler",
    "GenerationSchedule",
    "ScheduleError",
    "StepConfig",
    "ensemble",
    "filter_logits",
    "load_schedule",
    "sample_tokens",
    "temperature_at",
    "tokens_per_step",
]
