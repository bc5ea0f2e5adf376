"""The conformance suite on every installed modality, and proof that its checks catch broken plugins."""

from __future__ import annotations

import pytest

from fourm_core.testing.checks import (
    ConformanceError,
    check_lazy_import,
    check_serializer,
    check_spec,
    check_vocabulary,
    run_checks,
)
from fourm_core.testing.conformance import (  # noqa: F401  (collected here, parametrised by the pytest plugin)
    test_entry_point_import_is_light,
    test_parts_resolve,
    test_serializer_round_trips,
    test_spec_is_valid,
    test_tokens_inside_shared_vocabulary,
)
from helpers import registry_with

SEQUENCE_PLUGIN = """
import random
from fourm_core.serialization import SerializationError, TokenCursor, value_token
from fourm_core.spec import PresetLayout, SerializerSpec

@hookimpl
def fourm_register_modalities(register):
    register(ModalitySpec(name="ocr", key="ocr", kind="sequence", embedding="1d", vocabulary="text", masking="span",
                          presets={"paper": PresetLayout(max_tokens=16), "tiny": PresetLayout(max_tokens=16)}))

@hookimpl
def fourm_register_serializers(register):
    register(SerializerSpec(modality="ocr", factory="{module}:{cls}"))

class Lossy:
    modality = "ocr"
    def serialize(self, value, rng=None):
        return " ".join(value_token(0, v) for v in value)
    def parse(self, text):
        return [v // 2 * 2 for v in (TokenCursor(self.modality, text).values(0, len(text.split())))]
    def example(self, rng):
        return [rng.randrange(999) for _ in range(rng.randint(1, 5))]

class Crashing(Lossy):
    def parse(self, text):
        return [int(t.split("=")[1]) for t in text.split()]

class TooLong(Lossy):
    def parse(self, text):
        return TokenCursor(self.modality, text).values(0, len(text.split()))
    def example(self, rng):
        return list(range(40))
"""


def _ocr_registry(make_dist, cls: str):
    ep = make_dist(
        f"fourm-ocr-{cls.lower()}",
        "ocr",
        SEQUENCE_PLUGIN.replace("{module}", f"fourm_ocr_{cls.lower()}_plugin").replace("{cls}", cls),
    )
    return registry_with(ep)


def test_a_lossy_serializer_fails_the_round_trip(make_dist) -> None:
    reg = _ocr_registry(make_dist, "Lossy")
    with pytest.raises(ConformanceError, match=r"\[ocr from fourm-ocr-lossy 9.9.9\] serialize\(parse\(s\)\) != s"):
        check_serializer(reg.get("ocr"), reg)


def test_a_parser_that_crashes_on_garbage_fails(make_dist) -> None:
    reg = _ocr_registry(make_dist, "Crashing")
    with pytest.raises(ConformanceError, match="must raise SerializationError"):
        check_serializer(reg.get("ocr"), reg)


def test_examples_beyond_the_token_budget_fail(make_dist) -> None:
    reg = _ocr_registry(make_dist, "TooLong")
    with pytest.raises(ConformanceError, match="exceeds max_tokens 16"):
        check_vocabulary(reg.get("ocr"), reg)


#: a sequence modality that forgot its serializer
BARE_PLUGIN = """
from fourm_core.plugin import PresetLayout, declare

LAYOUT = PresetLayout(max_tokens=8)
fourm_register_modalities = declare(
    ModalitySpec(name="bare", key="bare", kind="sequence", presets={"paper": LAYOUT, "tiny": LAYOUT})
)
"""

#: a plugin whose entry point imports torch at load time
HEAVY_PLUGIN = """
import torch

@hookimpl
def fourm_register_modalities(register):
    register(image_spec("heavy"))
"""


def test_a_sequence_modality_without_serializer_fails(make_dist) -> None:
    reg = registry_with(make_dist("fourm-bare", "bare", BARE_PLUGIN))
    with pytest.raises(ConformanceError, match="needs a serializer"):
        check_spec(reg.get("bare"), reg)


def test_a_heavy_entry_point_fails_the_lazy_import_check(make_dist) -> None:
    reg = registry_with(make_dist("fourm-heavy", "heavy", HEAVY_PLUGIN))
    with pytest.raises(ConformanceError, match=r"heavy modules \['torch'\]"):
        check_lazy_import(reg.get("heavy"), reg)


def test_run_checks_collects_failures_instead_of_stopping(make_dist) -> None:
    reg = _ocr_registry(make_dist, "Lossy")
    results = run_checks(reg, ["ocr", "det"], ["spec", "serializer"])
    assert [(r.modality, r.check, r.ok) for r in results] == [
        ("ocr", "spec", True),
        ("ocr", "serializer", False),
        ("det", "spec", True),
        ("det", "serializer", True),
    ]
