"""Property tests (hypothesis) of every registered sequence serializer: the conformance suite's round-trip and
vocabulary checks, on examples drawn from hypothesis-chosen seeds instead of the fixed seeds 0..24.

The values come from each serializer's own ``example(rng)``, so the strategy knows nothing about any format (the
core names no modality); hypothesis picks the seeds, which reaches examples the fixed seeds never draw. The checks
themselves are :func:`~fourm_core.testing.checks.check_serializer_example` and
:func:`~fourm_core.testing.checks.check_vocabulary_example`, the same code ``fourm validate`` runs:

* ``serialize(parse(serialize(v))) == serialize(v)``, a shuffled serialisation parses stably, chunked sequences
  reassemble from their masking chunks;
* every token of ``serialize(v)`` is in the shared text vocabulary (no ``[UNK]``, ids inside it) and the sequence
  fits the paper token budget with its ``[EOS]``.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fourm_core.registry import Registry
from fourm_core.testing.checks import (
    check_serializer_example,
    check_vocabulary_example,
    conformance_vocabulary,
)
from fourm_core.vocab import TextVocabulary
from helpers import EXAMPLE_PLUGIN

#: the plugins as the rest of the suite loads them; collected once, here, to parametrise by modality
_REGISTRY = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
SERIALIZED = [m.name for m in _REGISTRY.modalities() if _REGISTRY.serializer_spec(m.name) is not None]
#: seeds of ``example(Random(seed))``: any 64-bit value, so hypothesis explores far beyond the fixed 0..24
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
#: ~25 examples per serializer keeps the file fast; no example database (nothing written into the checkout)
PROPERTY = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return _REGISTRY


@pytest.fixture(scope="module")
def vocabulary(registry: Registry) -> TextVocabulary:
    return conformance_vocabulary(registry)


def test_every_sequence_modality_is_covered(registry: Registry) -> None:
    """The parametrisation below is the registry's: a sequence modality without a serializer would be a conformance
    failure, and an empty list would make every property vacuous."""
    assert SERIALIZED, "no registered sequence serializer to test"
    sequences = {m.name for m in registry.modalities() if m.spec.kind.value == "sequence"}
    assert sequences <= set(SERIALIZED)


@pytest.mark.parametrize("check", ["round_trip", "in_vocabulary"])
@pytest.mark.parametrize("name", SERIALIZED)
def test_drawn_examples_hold_the_property(
    registry: Registry, vocabulary: TextVocabulary, name: str, check: str
) -> None:
    """``round_trip``: :func:`check_serializer_example`; ``in_vocabulary``: :func:`check_vocabulary_example` (for
    the modalities written in the text vocabulary), each on ~25 hypothesis-drawn seeds."""
    modality = registry.get(name)
    if check == "in_vocabulary" and modality.spec.vocabulary.value != "text":
        pytest.skip(f"{name} is not written in the text vocabulary")
    serializer = modality.serializer()

    @PROPERTY
    @given(seed=SEEDS)
    def holds(seed: int) -> None:
        if check == "round_trip":
            check_serializer_example(modality, registry, seed, serializer)
        else:
            check_vocabulary_example(modality, vocabulary, seed, serializer)

    holds()


def test_the_property_fails_on_a_broken_serializer(registry: Registry) -> None:
    """The harness can fail: a serializer whose parse reads back some other value breaks the round trip, and
    hypothesis reports it (a property test that cannot fail proves nothing)."""
    modality = registry.get(SERIALIZED[0])
    real = modality.serializer()

    class Forgetful:
        """``real``, except that ``parse`` returns another example than the one written."""

        def __getattr__(self, attr: str) -> object:
            return getattr(real, attr)

        def parse(self, text: str) -> object:
            return real.example(random.Random(len(text) + 1))

    @PROPERTY
    @given(seed=SEEDS)
    def round_trip(seed: int) -> None:
        check_serializer_example(modality, registry, seed, Forgetful())

    with pytest.raises(AssertionError, match=r"serialize\(parse\(s\)\) != s"):
        round_trip()
