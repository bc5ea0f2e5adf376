"""How ``fourm`` ends: a user mistake as one line and exit code 2, a bug as a traceback and exit code 1.

Every command runs under :func:`run_reported` (called by :func:`fourm_core.apps.cli.main.main`). A user mistake
(a missing or wrong path, a file that is not a store, a bad config value, a corrupt JSON or safetensors file, a
full disk, a plugin conflict) is printed as ``error: <what, where, what was expected>`` on stderr, with no
traceback: the user has something to fix, not something to debug. Anything else is a programming error (in fourm or
a plugin): its traceback is printed with a request to report it. ``fourm --debug`` or ``FOURM_DEBUG=1`` prints the
traceback of user mistakes too.

What counts as a user mistake (:func:`user_error_message`): a :class:`~fourm_core.errors.UserError`; the project's
own error classes (:data:`USER_ERRORS`); pydantic validation errors; JSON / YAML / safetensors parse errors;
``OSError`` (missing files, permissions, a full disk); and a ``ValueError`` that fourm's own code (or a plugin's)
raised on purpose, which is how older code reports a bad value. A ``ValueError`` raised inside numpy or torch is a
bug, not the user's fault.

The argument types (:func:`positive_int` ...) make bad numbers argparse errors, which are one line too
(:class:`FourmArgumentParser`).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fourm_core.errors import UsageError, UserError, one_line, raised_by_fourm

__all__ = [
    "FourmArgumentParser",
    "check_modality_names",
    "USER_ERRORS",
    "debug_requested",
    "existing_dir",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "run_reported",
    "user_error_message",
]

#: ``module:Class`` of the project's error classes that mean "the user has something to fix". Looked up in
#: ``sys.modules`` only: an exception of a class whose module was never imported cannot have been raised.
USER_ERRORS: tuple[str, ...] = (
    "fourm_core.data.pipeline:NonFiniteInputError",
    "fourm_core.inference.pipeline:ModelAssetsError",
    "fourm_core.inference.requests:GenerationRequestError",
    "fourm_core.inference.retrieval:RetrievalError",
    "fourm_core.inference.schedule:ScheduleError",
    "fourm_core.inference.schemes:UnknownSchemeError",
    "fourm_core.keys:KeyTableError",
    "fourm_core.labeling.api:LabelError",
    "fourm_core.registry.discovery:PluginError",
    "fourm_core.serialization:SerializationError",
    "fourm_core.sources.photo_types:IngestError",
    "fourm_core.sources.protocol:SourceError",
    "fourm_core.storage.integrity:StoreError",
    "fourm_core.storage.layout:LayoutError",
    "fourm_core.storage.source_writer:SourceChangedError",
    "fourm_core.storage.store:StoreError",
    "fourm_core.tokenizers.families:UnknownFamilyError",
    "fourm_core.tokenizers.tokenizer:TokenizerError",
    "fourm_core.training.config:ConfigError",
)

#: errno values that mean "the disk is full": the fix is space, and every fourm writer resumes where it stopped
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: what torch's zip writer says when a write fails half-way (a full disk, in practice), without the errno
_TORCH_WRITE_FAILED = ("unexpected pos", "file write failed", "basic_ios::clear")


# ---------------------------------------------------------------------------------------------------- arguments


class FourmArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fourm data synth: error: argument --n: ... (see `fourm data synth --help`)``
    instead of the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _number(kind: Callable[[str], Any], minimum: float, strict: bool, words: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if value != value or value < minimum or (strict and value == minimum):  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {words}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


#: ``type=`` of counts that must be at least 1 (``--steps``, ``--n``, ``--image-size``, ``--ensemble`` ...)
positive_int = _number(int, 0, True, "a whole number >= 1")
#: ``type=`` of counts that may be 0 (``--threads 0``: torch's default)
non_negative_int = _number(int, 0, False, "a whole number >= 0")
#: ``type=`` of durations and rates that must be above 0
positive_float = _number(float, 0.0, True, "a number > 0")


def existing_dir(text: str) -> str:
    """``type=`` of folders that must already exist (trained tokenizers): a typo must not mean "nothing trained"."""
    if not Path(text).is_dir():
        what = "is a file, not a folder" if Path(text).exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"the folder {text} {what}")
    return text


def check_modality_names(registry: Any, names: list[str], flag: str) -> None:
    """Every name must be a registered modality: a typo in ``--only`` would otherwise select nothing and report
    success. The error suggests the nearest names."""
    import difflib

    for name in names:
        if name not in registry:
            close = difflib.get_close_matches(name, registry.names(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(registry.names())})"
            raise UsageError(f"{flag} {name}: no such modality{hint}")


# ---------------------------------------------------------------------------------------------------- errors


def debug_requested(argv: list[str]) -> bool:
    """``fourm --debug ...`` (before the command) or ``FOURM_DEBUG`` set to 1/true/yes/on."""
    value = os.environ.get("FOURM_DEBUG", "").strip().lower()
    before_command = argv[: next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))]
    return "--debug" in before_command or value in ("1", "true", "yes", "on")


def _known_classes() -> tuple[type, ...]:
    classes: list[type] = [UserError]
    for ref in USER_ERRORS:
        module, _, name = ref.partition(":")
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


def _validation_message(exc: Any) -> str:
    """pydantic's many-line report as one line: ``invalid TrainConfig: steps: Input should be ... (got 0); ...``."""
    parts = []
    for e in exc.errors(include_url=False):
        where = ".".join(str(p) for p in e.get("loc", ())) or "value"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"{where}: {e['msg']}{got}")
    return f"invalid {exc.title}: {'; '.join(parts)}"


def _os_message(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    if exc.errno in _FULL:
        return f"{where or 'writing'}: no space left on device; free some space and rerun (the work done is kept)"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where and where not in reason else reason


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def user_error_message(exc: BaseException) -> str | None:
    """The one line to show for a user mistake, or ``None`` for a programming error (see the module docstring)."""
    for link in _chain(exc):  # a full disk is the user's to fix however deep it surfaced
        if isinstance(link, OSError) and link.errno in _FULL:
            return _os_message(link)
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILED):
        return f"writing a file failed, most likely a full disk ({one_line(str(exc))}); free some space and rerun"
    if isinstance(exc, _known_classes()):
        return str(exc)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        return _validation_message(exc)
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        return f"not valid YAML: {exc}"
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and isinstance(exc, safetensors.SafetensorError):
        return f"not a readable safetensors file: {exc}"
    if isinstance(exc, OSError):  # missing files, permissions, not a folder ...: the user's environment
        return _os_message(exc)
    if isinstance(exc, ValueError) and raised_by_fourm(exc):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory: ask for less at once (fewer samples, a smaller --ensemble, batch or image size)"
    return None


def run_reported(run: Callable[[], int], debug: bool) -> int:
    """``run()``'s exit code; a user mistake prints one line on stderr and gives 2, a programming error its
    traceback and a request to report it and gives 1, Ctrl-C gives 130."""
    try:
        return run()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place that decides how fourm ends
        message = user_error_message(exc)
        if message is None:
            traceback.print_exc()
            print(
                f"fourm: internal error ({type(exc).__name__}); this is a bug in fourm or a plugin, not in your "
                "input: please report it with the command line and the traceback above",
                file=sys.stderr,
            )
            return 1
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(message)}", file=sys.stderr)
        return 2
