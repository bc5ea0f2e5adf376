"""The one protocol every data source follows, built in or from a plugin, and how ``fourm data`` builds one by name.

A *source* is where samples come from: the synthetic world, a folder of photos, a third party's dataset format. A
plugin declares it with ``fourm_register_sources`` (``SourceSpec(name=..., factory="pkg.module:callable")``); the
built-in sources are declared the same way (:mod:`fourm_core.sources.plugin`), so ``fourm data ingest --source NAME``
finds them all through the registry and nothing in the command line names one.

The factory is imported and called only when a command needs the source: ``factory(settings) -> Source``, where
:class:`SourceSettings` carries what the command line gave (a location, the image size, a sample count and seed for
generated sources, and free ``--option key=value`` pairs the source validates with its own pydantic model, see
:meth:`SourceSettings.options_as`).

A :class:`Source` then gives, per sample index, a dict of *fields* (``record(index)``): numpy arrays, text or
JSON-able values, each declared once by an :class:`~fourm_core.spec.ArraySpec` in ``arrays()``. The fields are
written into the store's ``source`` part, where labelers read them (``requires=("source:depth",)``). A source must be
picklable (``fourm data --workers N`` sends it to worker processes) and deterministic in its settings, since
``describe()`` is how a resumed write checks it continues the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fourm_core.spec import ArraySpec

__all__ = ["Source", "SourceError", "SourceFactory", "SourceSettings", "build_source"]

_Options = TypeVar("_Options", bound=BaseModel)


class SourceError(ValueError):
    """A source cannot be built from the settings given (unknown name, missing location, bad option)."""


@runtime_checkable
class Source(Protocol):
    """What a data source is to the store writer (:func:`fourm_core.storage.source_writer.write_source`).

    ``name`` is recorded in the store (``fourm data info`` shows it); ``arrays()`` declares the fields every sample
    has; ``record(index)`` returns them for one sample (raise an exception whose message names the sample for a bad
    one: it is recorded and the run goes on); ``describe()`` is a JSON-able description of the configuration.
    """

    name: str

    def arrays(self) -> tuple[ArraySpec, ...]:
        """Storage schema of the source's fields."""
        ...

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def record(self, index: int) -> dict[str, Any]:
        """Fields of sample ``index``."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able description recorded in the store; a resumed write must describe the same source."""
        ...


class SourceSettings(BaseModel):
    """What ``fourm data`` hands a source factory, from its command line. Sources use the fields that apply to them
    and refuse, with :class:`SourceError`, a setting they need but did not get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: str | None = Field(None, description="where the data is: a folder, a file; the source interprets it")
    image_size: int = Field(..., gt=0, description="side of the square images the store holds")
    n: int | None = Field(None, gt=0, description="how many samples to make, for generated sources")
    seed: int = Field(0, description="seed of generated sources")
    options: dict[str, Any] = Field(default_factory=dict, description="source-specific --option key=value pairs")

    def require_location(self, source: str) -> Path:
        """The location as a path that exists; the error names the source and what it expected."""
        if not self.location:
            raise SourceError(f"source {source!r} needs a location (a folder or file to read)")
        path = Path(self.location)
        if not path.exists():
            raise SourceError(f"source {source!r}: {path} does not exist")
        return path

    def require_n(self, source: str) -> int:
        """The sample count of a generated source; the error says how to give it."""
        if self.n is None:
            raise SourceError(f"source {source!r} generates samples: give their number with --n")
        return self.n

    def options_as(self, model: type[_Options], source: str, **fixed: Any) -> _Options:
        """Validate ``options`` (plus ``fixed`` fields set by the source) with the source's own pydantic model; a bad
        or unknown option is one :class:`SourceError` naming the source and the option."""
        taken = sorted(set(self.options) & set(fixed))
        if taken:
            raise SourceError(f"source {source!r}: {', '.join(taken)} is set by its own flag, not by --option")
        try:
            return model.model_validate({**self.options, **fixed})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            raise SourceError(f"source {source!r}: bad option ({problems})") from None


#: What ``SourceSpec.factory`` names: a callable (a class, a classmethod) from settings to a source.
SourceFactory = Callable[[SourceSettings], Source]


def build_source(name: str, settings: SourceSettings, registry: Any | None = None) -> Source:
    """Look source ``name`` up in the registry, import its factory and build it from ``settings``.

    An unknown name raises :class:`SourceError` listing the known sources; a factory that fails to import is a
    :class:`SourceError` naming the factory. Errors the factory raises about its settings propagate.
    """
    from fourm_core.registry import Registry, resolve_ref

    registry = registry if registry is not None else Registry()
    known = [s.name for s in registry.sources()]
    if name not in known:
        raise SourceError(f"no data source {name!r}; known sources: {', '.join(known) or 'none'}")
    spec = registry.source(name)
    try:
        factory = resolve_ref(spec.factory)
    except Exception as exc:  # a broken plugin module: name it, whatever it raised
        raise SourceError(f"source {name!r}: its factory {spec.factory!r} failed to import: {exc!r}") from exc
    source = factory(settings)
    if not isinstance(source, Source):
        raise SourceError(f"source {name!r}: {spec.factory!r} returned a {type(source).__name__}, not a Source")
    return source
