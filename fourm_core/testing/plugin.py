"""pytest plugin: fixtures and options for testing fourm modality plugins (loaded automatically via ``pytest11``)."""

from __future__ import annotations

import pytest

from fourm_core.registry import Registry


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--fourm-modality NAME`` (repeatable) restricts the conformance suite to some modalities."""
    group = parser.getgroup("fourm")
    group.addoption(
        "--fourm-modality",
        action="append",
        default=[],
        metavar="NAME",
        help="run the fourm conformance suite only for these modalities (default: all registered)",
    )


@pytest.fixture(scope="session")
def fourm_registry() -> Registry:
    """The registry of the installed plugins, loaded once per test session (honours FOURM_DISABLE_PLUGINS)."""
    return Registry()


@pytest.fixture(scope="session")
def fourm_text_vocabulary(fourm_registry: Registry):
    """A shared text vocabulary trained on the registered serializers' examples (for vocabulary checks)."""
    from fourm_core.testing.checks import conformance_vocabulary

    return conformance_vocabulary(fourm_registry)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise any test taking ``fourm_modality_name`` over the registered (or selected) modalities."""
    if "fourm_modality_name" not in metafunc.fixturenames:
        return
    selected = metafunc.config.getoption("--fourm-modality")
    names = selected or Registry().names()
    metafunc.parametrize("fourm_modality_name", names)
