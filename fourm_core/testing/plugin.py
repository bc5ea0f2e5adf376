"""pytest plugin: fixtures and options for testing fourm modality plugins (loaded automatically via ``pytest11``).

Compatibility tests compare against the official ml-4m files (the WordPiece vocabulary, the masking mixtures, the
training configs). Those files are not shipped, and where they live is a property of the machine, so the plugin never
guesses: the folder comes from an explicit setting, checked in this order,

* the command-line option ``--fourm-ml4m-data PATH``,
* the environment variable ``FOURM_ML4M_DATA``,
* the ini option ``fourm_ml4m_data`` (``[tool.pytest.ini_options]``), relative to the folder of the ini file,

and tests that need it take the :func:`fourm_ml4m_data` fixture, which skips with a message naming the setting when
none is given or the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fourm_core.registry import Registry

if TYPE_CHECKING:
    from fourm_core.vocab import TextVocabulary

#: The official ml-4m text tokenizer file, used by compatibility tests when it is available.
ML4M_TOKENIZER = "text_tokenizer_4m_wordpiece_30k.json"
#: The three ways to say where the official ml-4m files are (see the module docstring for the order).
ML4M_DATA_ENV = "FOURM_ML4M_DATA"
ML4M_DATA_OPTION = "--fourm-ml4m-data"
ML4M_DATA_INI = "fourm_ml4m_data"
ML4M_DATA_HINT = f"pass {ML4M_DATA_OPTION} PATH, set {ML4M_DATA_ENV}=PATH or the ini option {ML4M_DATA_INI}"


def ml4m_data_dir(config: pytest.Config | None = None) -> Path | None:
    """The configured folder of official ml-4m files, or None when nothing says where it is.

    With a pytest ``config`` the option, the environment and the ini option are consulted (in that order); without
    one (scripts such as the benchmarks) only the environment. The folder is not checked for existence here: callers
    decide whether an absent folder is a skip or an error.
    """
    if config is not None and (option := config.getoption(ML4M_DATA_OPTION)):
        return Path(option).expanduser()
    if env := os.environ.get(ML4M_DATA_ENV):
        return Path(env).expanduser()
    if config is not None and (ini := str(config.getini(ML4M_DATA_INI) or "")):
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return (base / Path(ini).expanduser()).resolve()
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--fourm-modality NAME`` (repeatable) restricts the conformance suite to some modalities;
    ``--fourm-ml4m-data PATH`` (or ``FOURM_ML4M_DATA``, or the ``fourm_ml4m_data`` ini option) says where the
    official ml-4m files are."""
    group = parser.getgroup("fourm")
    group.addoption(
        "--fourm-modality",
        action="append",
        default=[],
        metavar="NAME",
        help="run the fourm conformance suite only for these modalities (default: all registered)",
    )
    group.addoption(
        ML4M_DATA_OPTION,
        default=None,
        metavar="PATH",
        help=f"folder of the official ml-4m files for compatibility tests (default: ${ML4M_DATA_ENV}, then the "
        f"{ML4M_DATA_INI} ini option; without any, those tests are skipped)",
    )
    parser.addini(ML4M_DATA_INI, help="folder of the official ml-4m files, relative to the ini file", default="")


@pytest.fixture(scope="session")
def fourm_ml4m_data(request: pytest.FixtureRequest) -> Path:
    """The folder of the official ml-4m files; the test is skipped, naming the setting, when it is not configured
    or the folder is absent (the files are not shipped with fourm)."""
    folder = ml4m_data_dir(request.config)
    if folder is None:
        pytest.skip(f"official ml-4m files not configured ({ML4M_DATA_HINT})")
    if not folder.is_dir():
        pytest.skip(f"official ml-4m files: {folder} does not exist ({ML4M_DATA_HINT})")
    return folder


@pytest.fixture(scope="session")
def fourm_registry() -> Registry:
    """The registry of the installed plugins, loaded once per test session (honours FOURM_DISABLE_PLUGINS)."""
    return Registry()


@pytest.fixture(scope="session")
def fourm_text_vocabulary(fourm_registry: Registry) -> TextVocabulary:
    """A shared text vocabulary trained on the registered serializers' examples (for vocabulary checks)."""
    from fourm_core.testing.checks import conformance_vocabulary

    return conformance_vocabulary(fourm_registry)


@pytest.fixture(scope="session")
def ml4m_vocabulary(fourm_ml4m_data: Path) -> TextVocabulary:
    """The official ml-4m WordPiece vocabulary (from :func:`fourm_ml4m_data`); skipped when the file is absent."""
    from fourm_core.vocab import TextVocabulary

    path = fourm_ml4m_data / ML4M_TOKENIZER
    if not path.is_file():
        pytest.skip(f"official ml-4m tokenizer not at {path} ({ML4M_DATA_HINT})")
    return TextVocabulary.load(path)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise any test taking ``fourm_modality_name`` over the registered (or selected) modalities."""
    if "fourm_modality_name" not in metafunc.fixturenames:
        return
    selected = metafunc.config.getoption("--fourm-modality")
    names = selected or Registry().names()
    metafunc.parametrize("fourm_modality_name", names)
