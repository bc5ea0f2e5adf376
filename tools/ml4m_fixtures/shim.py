"""Import ml-4m's classes in a side environment without its data stack.

ml-4m (apple/ml-4m, not vendored here) imports torchvision, albumentations, webdataset, boto3, braceexpand, pandas
and cv2 at import time although the model and tokenizer classes never call them. This module installs a
``sys.meta_path`` finder that serves an empty stand-in module for each of those names, then puts the ml-4m checkout
(``ML4M_SRC``, default ``../side/ml4m-src`` beside the repository) on ``sys.path``.

Run only in the side environment described in ``tools/ml4m_fixtures/README.md``; fourm itself never imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import random
import sys
import types
from pathlib import Path

#: packages ml-4m imports at module level but whose code the model and tokenizer paths never run
STUBBED = ("torchvision", "albumentations", "webdataset", "boto3", "botocore", "braceexpand", "pandas", "cv2", "wandb")


class _Anything(types.ModuleType):
    """A module whose every attribute is another stand-in (enough for ``from x import y`` and decorators)."""

    __path__: list[str] = []

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self.__name__}.{name}")

    def __call__(self, *args: object, **kwargs: object) -> object:
        return _Anything(f"{self.__name__}()")

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return _Anything(spec.name)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        return None


def install(src: str | None = None) -> Path:
    """Install the stand-ins and put ml-4m on ``sys.path``; returns the checkout used."""
    root = Path(src or os.environ.get("ML4M_SRC", Path(__file__).resolve().parents[3] / "side" / "ml4m-src"))
    if not (root / "fourm" / "models" / "fm.py").is_file():
        raise SystemExit(f"{root}: not an ml-4m checkout (set ML4M_SRC to the folder holding fourm/models/fm.py)")
    if not any(isinstance(f, _StubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _StubFinder())
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _patch_random_sample()
    return root


def _patch_random_sample() -> None:
    """Python >= 3.11 refuses ``random.sample(dict.items(), n)``, which ml-4m's ``cat_decoder_tensors`` calls;
    converting the population to a tuple first gives Python 3.10's draws exactly."""
    original = random.sample
    if getattr(original, "_fourm_patched", False):
        return

    def sample(population, k, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(population, (list, tuple, range, str)):
            population = tuple(population)
        return original(population, k, *args, **kwargs)

    sample._fourm_patched = True  # type: ignore[attr-defined]
    random.sample = sample  # type: ignore[assignment]
    random.Random.sample = lambda self, population, k, *a, **kw: original.__func__(  # type: ignore[attr-defined,method-assign]
        self, tuple(population) if not isinstance(population, (list, tuple, range, str)) else population, k, *a, **kw
    )
