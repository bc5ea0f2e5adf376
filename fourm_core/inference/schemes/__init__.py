"""Generation schemes as a registry: one module per scheme, one entry per module.

A scheme decides how one schedule step fills its target key: MaskGIT and ROAR decode image and global tokens in
parallel over a few steps, autoregressive decoding writes a sequence token by token. Each is a :class:`Scheme`
(``name``, :meth:`Scheme.check` against the target's :class:`~fourm_core.keys.KeyInfo` before any compute,
:meth:`Scheme.run` inside the sampler). Adding a scheme is one file with a ``SCHEME`` object and one line in
:data:`BUILTIN` (or a call to :func:`register_scheme` from outside the package); an unknown name is an error listing
the known ones. Built-in schemes are imported on first use, so schedules validate without importing torch code.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from fourm_core.inference.sampler import Entry, GenerationSampler, Guidance
    from fourm_core.inference.schedule import StepConfig
    from fourm_core.keys import KeyInfo

__all__ = [
    "BUILTIN",
    "Scheme",
    "SchemeJob",
    "UnknownSchemeError",
    "default_scheme",
    "get_scheme",
    "register_scheme",
    "scheme_names",
]

#: The schemes fourm ships: name -> ``module:attribute`` of its :class:`Scheme` (loaded when first asked for).
BUILTIN: dict[str, str] = {
    "maskgit": "fourm_core.inference.schemes.maskgit:SCHEME",
    "roar": "fourm_core.inference.schemes.roar:SCHEME",
    "autoregressive": "fourm_core.inference.schemes.autoregressive:SCHEME",
}
_LOADED: dict[str, Scheme] = {}


class UnknownSchemeError(ValueError):
    """A scheme name nobody registered; the message lists the known ones."""


@dataclass
class SchemeJob:
    """One step for a scheme to run: the sampler (model, key table, batch builders), the step, the known entries
    (``state``, which the scheme extends with its target), the guidance passes, the batch size, the random
    generator, whether sequences use the key/value cache, the trace list (or ``None``), per sequence target the
    ids each row teacher-forces before sampling (:mod:`fourm_core.inference.prefix`), and ``logprobs``: when a
    dict, a scheme that samples token by token records there, per target, the (batch, max_tokens) log-probability
    of each id it chose (NaN where it chose none: forced ids, padding)."""

    sampler: GenerationSampler
    step: StepConfig
    state: dict[str, Entry]
    guidance: Guidance
    batch: int
    generator: torch.Generator
    use_cache: bool = True
    trace: list[dict[str, Any]] | None = None
    prefixes: dict[str, list[list[int]]] | None = None
    logprobs: dict[str, torch.Tensor] | None = None


@runtime_checkable
class Scheme(Protocol):
    """One way of generating a target key (see the module docstring)."""

    name: str

    def fits(self, info: KeyInfo) -> bool:
        """Whether this scheme can decode keys like ``info`` (the default schedule picks the first that fits)."""
        ...

    def check(self, step: StepConfig, info: KeyInfo, where: str) -> None:
        """Raise :class:`~fourm_core.inference.schedule.ScheduleError` starting with ``where`` unless ``step`` can
        run on ``info``; called before any compute."""
        ...

    def run(self, job: SchemeJob) -> torch.Tensor:
        """Generate ``job.step.target`` for ``job.batch`` rows, record it in ``job.state`` as an input of later
        steps, and return its (batch, max_tokens) ids."""
        ...


def register_scheme(scheme: Scheme, replace: bool = False) -> Scheme:
    """Make ``scheme`` available by its name (schedules may then name it); a second scheme of one name is refused
    unless ``replace``."""
    if not isinstance(scheme, Scheme):
        raise TypeError(f"{scheme!r} is not a generation scheme (needs name, fits, check and run)")
    if not replace and scheme.name in scheme_names() and _LOADED.get(scheme.name) is not scheme:
        raise ValueError(f"a generation scheme named {scheme.name!r} is already registered")
    _LOADED[scheme.name] = scheme
    return scheme


def scheme_names() -> list[str]:
    """Every known scheme name, the built-in ones first."""
    return [*BUILTIN, *(n for n in _LOADED if n not in BUILTIN)]


def get_scheme(name: str) -> Scheme:
    """The scheme called ``name``; an unknown name is an :class:`UnknownSchemeError` listing the known ones."""
    if name not in _LOADED:
        if name not in BUILTIN:
            raise UnknownSchemeError(f"unknown generation scheme {name!r} (known: {', '.join(scheme_names())})")
        module, _, attribute = BUILTIN[name].partition(":")
        _LOADED[name] = getattr(importlib.import_module(module), attribute)
    return _LOADED[name]


def default_scheme(info: KeyInfo, prefer: Collection[str] = ()) -> str:
    """The first scheme (``prefer`` first, then registration order) that can decode ``info``."""
    for name in [*prefer, *scheme_names()]:
        if get_scheme(name).fits(info):
            return name
    raise UnknownSchemeError(f"no generation scheme decodes {info.kind.value} keys such as {info.key!r}")
