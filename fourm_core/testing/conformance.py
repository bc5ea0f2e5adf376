"""The fourm conformance suite: every check of :mod:`fourm_core.testing.checks` on every registered modality, and
the grammar contract of sequence serializers (:mod:`fourm_core.testing.grammar_conformance`).

Collected by fourm's own tests and runnable by plugin authors on their installed plugin::

    pytest --pyargs fourm_core.testing.conformance --fourm-modality albedo
"""

from __future__ import annotations

import pytest

from fourm_core.registry import Registry
from fourm_core.testing.checks import (
    check_lazy_import,
    check_parts,
    check_serializer,
    check_spec,
    check_vocabulary,
)
from fourm_core.testing.grammar_conformance import check_grammar


def _modality(registry: Registry, name: str):
    if name not in registry:
        pytest.fail(f"modality {name!r} is not registered; problems: {[str(p) for p in registry.problems]}")
    return registry.get(name)


def test_spec_is_valid(fourm_registry: Registry, fourm_modality_name: str) -> None:
    """The spec validates, round-trips through JSON and has every preset."""
    check_spec(_modality(fourm_registry, fourm_modality_name), fourm_registry)


def test_parts_resolve(fourm_registry: Registry, fourm_modality_name: str) -> None:
    """Every lazily referenced part imports and is callable."""
    check_parts(_modality(fourm_registry, fourm_modality_name), fourm_registry)


def test_serializer_round_trips(fourm_registry: Registry, fourm_modality_name: str) -> None:
    """Sequence strings re-serialize exactly and malformed strings raise SerializationError."""
    check_serializer(_modality(fourm_registry, fourm_modality_name), fourm_registry)


def test_tokens_inside_shared_vocabulary(fourm_registry: Registry, fourm_text_vocabulary, fourm_modality_name: str):
    """Serialized examples encode without [UNK], inside the vocabulary and within the token budget."""
    check_vocabulary(_modality(fourm_registry, fourm_modality_name), fourm_registry, fourm_text_vocabulary)


def test_grammar_meets_its_serializer(fourm_registry: Registry, fourm_text_vocabulary, fourm_modality_name: str):
    """A serializer with a grammar (``HasGrammar``): the grammar accepts every string it writes, and every string
    the grammar allows parses (random walks within the paper token budget)."""
    check_grammar(_modality(fourm_registry, fourm_modality_name), fourm_registry, fourm_text_vocabulary)


def test_entry_point_import_is_light(fourm_registry: Registry, fourm_modality_name: str) -> None:
    """Importing the plugin module does not import torch, timm, deepspeed or zarr."""
    check_lazy_import(_modality(fourm_registry, fourm_modality_name), fourm_registry)
