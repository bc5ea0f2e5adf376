"""pytest plugin: fixtures and options for testing fourm modality plugins (loaded automatically via ``pytest11``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fourm_core.registry import Registry

#: The official ml-4m text tokenizer file, used by compatibility tests when it is available.
ML4M_TOKENIZER = "text_tokenizer_4m_wordpiece_30k.json"


def ml4m_data_dir(start: Path) -> Path:
    """Where the official ml-4m data files are: ``$FOURM_ML4M_DATA``, else ``shared/data/ml-4m`` in ``start`` or
    one of its parents (the checkout's sibling ``shared/`` folder), else that path under ``start``'s parent."""
    if env := os.environ.get("FOURM_ML4M_DATA"):
        return Path(env)
    start = start.resolve()
    for base in (start, *start.parents):
        candidate = base / "shared" / "data" / "ml-4m"
        if (candidate / ML4M_TOKENIZER).is_file():
            return candidate
    return start.parent / "shared" / "data" / "ml-4m"


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


@pytest.fixture(scope="session")
def ml4m_vocabulary(request: pytest.FixtureRequest):
    """The official ml-4m WordPiece vocabulary; the test is skipped when the file is absent (it is not shipped)."""
    from fourm_core.vocab import TextVocabulary

    path = ml4m_data_dir(request.config.rootpath) / ML4M_TOKENIZER
    if not path.is_file():
        pytest.skip(f"official ml-4m tokenizer not at {path} (set FOURM_ML4M_DATA)")
    return TextVocabulary.load(path)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise any test taking ``fourm_modality_name`` over the registered (or selected) modalities."""
    if "fourm_modality_name" not in metafunc.fixturenames:
        return
    selected = metafunc.config.getoption("--fourm-modality")
    names = selected or Registry().names()
    metafunc.parametrize("fourm_modality_name", names)
