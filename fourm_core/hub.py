"""Where published weights come from: a local folder or file as is, a Hugging Face hub id through the hub's cache.

Every loader of official assets (the 4M models, the official tokenizers) asks :func:`resolve` for a local path and
reads only safetensors and JSON from it. Downloads go through ``huggingface_hub.snapshot_download`` so that the
ecosystem's settings apply unchanged: ``HF_HOME`` / ``HF_HUB_CACHE`` pick the cache, ``HF_HUB_OFFLINE=1`` forbids
the network, and a ``revision`` (branch, tag or commit) pins what is read. The environment is read at call time,
not at import time (``huggingface_hub`` freezes its constants when first imported, so a test or a notebook that
sets ``HF_HUB_OFFLINE`` afterwards would otherwise be ignored).

Only ``*.json`` and ``*.safetensors`` files are ever fetched: pickled ``.bin`` / ``.pth`` / ``.pt`` files that some
repos also carry are neither downloaded nor read. A repo that is not cached while offline raises
:class:`HubAssetError` naming the repo, the cache looked in and the command that fetches it, before any compute.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from fourm_core.errors import UserError

__all__ = ["DEFAULT_PATTERNS", "HubAssetError", "hub_cache_dir", "is_offline", "is_repo_id", "resolve"]

#: What :func:`resolve` fetches from a repo: configs, weights and sharded-weight indexes; never pickles.
DEFAULT_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.safetensors.index.json")
#: Hub repo ids: ``owner/name``, each part of letters, digits, ``-``, ``_`` and ``.``, no ``--`` or ``..``, at most
#: 96 characters (the rules of ``huggingface_hub.utils.validate_repo_id``, checked here without importing it).
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
_KINDS = {"model": "model weights", "tokenizer": "tokenizer weights", "vocabulary": "text vocabulary"}


class HubAssetError(UserError, FileNotFoundError):
    """A hub asset that cannot be had: not cached while offline, an unknown repo or revision, an incomplete
    snapshot, or a string that is neither a path nor a repo id. Its message is one line saying what to do."""


def is_repo_id(value: str) -> bool:
    """Whether ``value`` is spelled like a hub repo id (``EPFL-VILAB/4M-21_B``); says nothing about existence."""
    return bool(_REPO_ID.match(value)) and "--" not in value and ".." not in value and not value.endswith(".")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) as set now."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    """The hub cache as ``huggingface_hub`` would pick it now: ``HF_HUB_CACHE``, else the legacy
    ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache``)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.path.expanduser(os.environ[name])))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def _fetch_hint(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"hf download {repo_id}{rev} --include '*.json' '*.safetensors'"


def resolve(
    path_or_repo_id: str | os.PathLike[str],
    revision: str | None = None,
    kind: str = "model",
    allow_patterns: Sequence[str] = DEFAULT_PATTERNS,
) -> Path:
    """A local folder or file holding ``path_or_repo_id``'s assets.

    An existing folder or file is returned as is (``revision`` is then meaningless and ignored). A hub repo id is
    fetched into (or found in) the hub cache with ``snapshot_download`` restricted to ``allow_patterns``, at
    ``revision`` (default: ``main``). ``kind`` (``model``, ``tokenizer``, ``vocabulary``) only words the errors.

    Raises :class:`HubAssetError` (one line) when the repo is not cached and the hub cannot or may not be reached,
    when the repo or revision does not exist, and when the string is neither an existing path nor a repo id."""
    text = os.fspath(path_or_repo_id)
    path = Path(text).expanduser()
    what = _KINDS.get(kind, kind)
    if path.exists():
        return path
    if not is_repo_id(text):
        raise HubAssetError(
            f"{text!r}: no such file or folder, and not a hub repo id (owner/name) either; give the folder or "
            f".safetensors file holding the {what}, or a repo id such as EPFL-VILAB/4M-21_B"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    cache = hub_cache_dir()
    offline = is_offline()
    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=list(allow_patterns),
        )
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:  # includes the incomplete-snapshot error
        why = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise HubAssetError(
            f"{text}{at}: the {what} are not in the hub cache {cache} and {why}; fetch them with "
            f"`{_fetch_hint(text, revision)}` (with network access, same HF_HOME / HF_HUB_CACHE) or pass a local "
            f"folder ({type(exc).__name__})"
        ) from None
    except HFValidationError as exc:
        raise HubAssetError(f"{text!r}: not a valid hub repo id ({exc})") from None
    except HfHubHTTPError as exc:  # unknown repo / revision, gated repo, hub error
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = {401: "unknown or private repo", 403: "gated repo", 404: "unknown repo or revision"}.get(
            status or 0, "hub error"
        )
        raise HubAssetError(f"{text}{at}: cannot fetch the {what} ({reason}: {type(exc).__name__})") from None
    return Path(folder)
