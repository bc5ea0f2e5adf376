"""What a pseudo-labeler sees and returns: the contract between the labeling runner and plugin labelers.

A plugin registers candidates with ``fourm_register_labelers``; the factory is called as
``factory(spec, context)`` and returns an object following :class:`Labeler`. The runner hands it one
:class:`SampleView` per sample (or a list of them to ``label_batch`` when the labeler batches, e.g. a neural teacher)
and stores the returned dict under the modality's raw part. A labeler raises :class:`LabelError` for a bad sample;
that sample is recorded as failed with the message and the rest goes on.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fourm_core.spec import LabelerSpec, ModalitySpec

__all__ = ["BatchLabeler", "LabelContext", "LabelError", "Labeler", "SampleView", "build_labeler", "config_hash"]


class LabelError(ValueError):
    """A sample cannot be labelled (missing or malformed input); the message says what was expected."""


@dataclass(frozen=True)
class LabelContext:
    """Run-wide facts a labeler may need: preset, image size, user options, what the source provides."""

    preset: str
    image_size: int
    source_fields: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Specs of every loaded modality, for labelers that read class sets or layouts declared by other plugins.
    modalities: Mapping[str, ModalitySpec] = field(default_factory=dict)


@dataclass
class SampleView:
    """One sample as a labeler sees it: the source's ground truth and the already labelled dependencies."""

    index: int
    source: Mapping[str, Any]
    labels: Mapping[str, Mapping[str, Any] | None]

    def truth(self, name: str) -> Any:
        """A source field (``rgb``, ``depth``, ``caption`` ...); LabelError when the source does not have it."""
        if name not in self.source:
            raise LabelError(f"sample {self.index}: the source has no {name!r} (it has {sorted(self.source)})")
        return self.source[name]

    def get(self, modality: str) -> Mapping[str, Any]:
        """The stored raw arrays of another modality; LabelError when it is missing or failed for this sample."""
        value = self.labels.get(modality)
        if value is None:
            raise LabelError(f"sample {self.index}: needs {modality!r}, which is not available for this sample")
        return value

    def maybe(self, modality: str) -> Mapping[str, Any] | None:
        """Another modality's arrays when present (for soft ``uses`` dependencies), else None."""
        return self.labels.get(modality)


@runtime_checkable
class Labeler(Protocol):
    """A pseudo-labeler instance (one per worker process)."""

    #: Bumped when outputs change; part of the provenance and of the resume check.
    version: str

    def label(self, sample: SampleView) -> dict[str, Any]:
        """The raw arrays of this modality for one sample, keyed by the spec's storage array names."""

    def dims(self) -> dict[str, int]:
        """Sizes of symbolic storage dimensions (e.g. ``{"C": 768}``); empty when all are fixed."""

    def provenance(self) -> dict[str, Any]:
        """What produced the labels (model, weights real or random-init, thresholds); stored in the part's attrs."""


class BatchLabeler(ABC):
    """Base of labelers that work on blocks of samples (neural teachers and encoders).

    The runner hands whole blocks to :meth:`label_batch` (:func:`label_many`); :meth:`label`, the one-sample entry
    of the :class:`Labeler` protocol, is a block of one through the same path, so labeling one sample and labeling a
    block cannot drift apart. Kept here, torch-free, so that torch-free modules can subclass it.
    """

    @abstractmethod
    def label_batch(self, samples: Sequence[SampleView]) -> list[dict[str, Any] | LabelError]:
        """Label a block of samples; a bad sample comes back as its LabelError, in its place."""

    def label(self, sample: SampleView) -> dict[str, Any]:
        """Label one sample (raises LabelError for a bad one)."""
        (result,) = self.label_batch([sample])
        if isinstance(result, LabelError):
            raise result
        return result


def build_labeler(labeler: LabelerSpec, spec: ModalitySpec, context: LabelContext) -> Any:
    """The labeler object a :class:`~fourm_core.spec.LabelerSpec` describes: its factory (imported now) called with
    the modality's spec, the run's context and the labeler's declared ``options``. The one place that calls
    labeler factories, so the calling convention lives in one spot."""
    from fourm_core.registry import resolve_ref

    return resolve_ref(labeler.factory)(spec, context, **labeler.options)


def config_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able configuration, used to refuse resuming with another configuration."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def label_many(labeler: Any, samples: Sequence[SampleView]) -> list[dict[str, Any] | LabelError]:
    """Run ``label_batch`` when the labeler has it, else ``label`` per sample, turning LabelErrors into values."""
    if hasattr(labeler, "label_batch"):
        return list(labeler.label_batch(list(samples)))
    out: list[dict[str, Any] | LabelError] = []
    for sample in samples:
        try:
            out.append(labeler.label(sample))
        except LabelError as exc:
            out.append(exc)
    return out
