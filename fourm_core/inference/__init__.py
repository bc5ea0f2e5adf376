"""Inference behind one object: :class:`Pipeline` (network, registry, preset, key table, vocabulary, tokenizers)
that generation (:mod:`.outputs`, :mod:`.requests`), retrieval (:mod:`.retrieval`, :mod:`.queries`), rendering and
evaluation take; the sampler (:mod:`.sampler`) with generation schemes as a registry (:mod:`.schemes`: MaskGIT,
ROAR, autoregressive, one module each) and classifier-free guidance; grammar-constrained decoding of sequences
(:mod:`.constrain`); schedules (:mod:`.schedule`); and majority-vote ensembling (:mod:`.ensemble`)."""

from fourm_core.inference.constrain import GrammarStates, sequence_grammars
from fourm_core.inference.ensemble import ensemble
from fourm_core.inference.pipeline import ModelAssetsError, Pipeline, as_pipeline
from fourm_core.inference.sampler import GenerationSampler, filter_logits, sample_tokens
from fourm_core.inference.schedule import (
    GenerationSchedule,
    ScheduleError,
    StepConfig,
    default_schedule,
    load_schedule,
    temperature_at,
    tokens_per_step,
)
from fourm_core.inference.schemes import Scheme, UnknownSchemeError, get_scheme, register_scheme, scheme_names

__all__ = [
    "GenerationSampler",
    "GenerationSchedule",
    "GrammarStates",
    "ModelAssetsError",
    "Pipeline",
    "ScheduleError",
    "Scheme",
    "StepConfig",
    "UnknownSchemeError",
    "as_pipeline",
    "default_schedule",
    "ensemble",
    "filter_logits",
    "get_scheme",
    "load_schedule",
    "register_scheme",
    "sample_tokens",
    "scheme_names",
    "sequence_grammars",
    "temperature_at",
    "tokens_per_step",
]
