"""Errors a user can fix, and the readers of user files that raise them.

A user who gives a wrong path, a corrupt config or a bad number must get one line naming the file, sample or key and
what was expected, not a traceback (``fourm`` prints it and exits with code 2, see
:func:`fourm_core.apps.cli.main.main`). Library code marks such errors by raising a :class:`UserError` (or a
subclass that also derives from the builtin it replaces, so existing ``except ValueError`` callers keep working);
the CLI's handler knows the project's older error classes too (:func:`user_error_message`).

Files users hand us (configs, vocabularies, weights, index sidecars) are read through :func:`read_json` and
:func:`load_safetensors` so that a truncated or overwritten file is reported with its path: the JSON and safetensors
parsers only say *what* is wrong (``Expecting value: line 2 column 1``), never *where*.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "FileFormatError",
    "UsageError",
    "UserError",
    "load_safetensors",
    "one_line",
    "raised_by_fourm",
    "read_json",
    "read_yaml",
]


class UserError(Exception):
    """A mistake the user can fix (a wrong path, a bad value, a damaged file); its message is one sentence that names
    the file, sample or key and what was expected. The CLI shows it as one line and exits with code 2."""


class UsageError(UserError, ValueError):
    """A bad command-line value or API argument (``--steps 0``, ``targets="depth"``); also a ``ValueError``."""


class FileFormatError(UserError, ValueError):
    """A user file that exists but cannot be read as what it should be (corrupt JSON, truncated safetensors)."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) folded into one space."""
    return " ".join(str(text).split())


def raised_by_fourm(exc: BaseException) -> bool:
    """The innermost frame of ``exc`` is fourm's code or a plugin's (a module named ``fourm...``): a deliberate
    ``raise ValueError("...")`` with a message for the user, not an accident deep in a library. The CLI's error
    report and the data-loader workers (which re-raise a worker's exception in the trainer) judge by this."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).startswith("fourm")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The parsed content of ``path``; a missing file raises ``FileNotFoundError`` naming it, a corrupt one a
    :class:`FileFormatError` naming it, the parser's reason and ``what`` it should hold."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no {what}", str(path)) from None
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not a {what} (not UTF-8 text: {exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise FileFormatError(f"{path}: not a valid {what} ({exc.msg} at {where})") from None


def read_yaml(path: str | os.PathLike[str], what: str = "YAML file") -> Any:
    """The parsed content of ``path`` (safe loader: plain data, never objects); a missing file raises
    ``FileNotFoundError`` naming it, a corrupt one a :class:`FileFormatError` naming it and the line."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no {what}", str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or exc
        raise FileFormatError(f"{path}: not a valid {what}{where} ({one_line(str(reason))})") from None


def load_safetensors(path: str | os.PathLike[str], what: str = "weights file") -> dict[str, Any]:
    """``safetensors.torch.load_file(path)``; a missing or damaged file (truncated, overwritten, not safetensors) is
    reported with its path instead of the library's bare "invalid header length"."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, f"no {what}", str(path))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: not a readable safetensors {what} ({one_line(str(exc))})") from None
