"""The hook contract is its own documentation: every hook is typed and documented."""

from __future__ import annotations

import inspect

import pytest

from fourm_core import hookspecs

HOOKS = sorted(
    n for n, f in vars(hookspecs).items() if n.startswith("fourm_") and hasattr(f, f"{hookspecs.PROJECT}_spec")
)


def test_there_are_hooks_for_every_phase() -> None:
    assert set(HOOKS) == {
        "fourm_register_modalities",
        "fourm_register_sources",
        "fourm_register_labelers",
        "fourm_register_serializers",
        "fourm_register_tokenizers",
        "fourm_masking_chunks",
        "fourm_register_decoders",
        "fourm_register_commands",
    }


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_real_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 200, f"{name} needs a docstring that documents it (it is the plugin API reference)"
    assert "register(" in doc or "return" in doc.lower()


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_fully_typed(name: str) -> None:
    signature = inspect.signature(getattr(hookspecs, name))
    assert signature.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values())


def test_registration_hooks_take_a_register_callback() -> None:
    for name in HOOKS:
        if name.startswith("fourm_register_"):
            assert list(inspect.signature(getattr(hookspecs, name)).parameters) == ["register"]
