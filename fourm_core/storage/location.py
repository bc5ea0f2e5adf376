"""Where a store lives: a local folder or any fsspec URL (``s3://bucket/x.zarr``, ``gs://...``, ``memory://x.zarr``).

Every command and API that takes a store takes a :class:`StoreLocation` or anything it parses: a path, a ``file://``
URL (both local) or a URL of an fsspec filesystem. Local stores keep exactly what they always had (Zarr's
LocalStore, ``stat`` for existence, POSIX locks); a URL goes through fsspec (Zarr's FsspecStore, object-store leases,
see :mod:`fourm_core.storage.locks`).

Storage options (an S3 endpoint, credentials profile, ...) are the keyword arguments of the fsspec filesystem. They
come from the caller, else from the environment variable ``FOURM_STORAGE_OPTIONS`` (a JSON object), which worker
processes and other machines inherit, so a store opened by URL opens the same way everywhere. A location is
picklable: worker processes reopen the store from it.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fourm_core.errors import UserError

__all__ = ["ENV_OPTIONS", "StorageOptionsError", "StoreLocation", "as_location"]

#: JSON object of fsspec storage options used when the caller gives none
ENV_OPTIONS = "FOURM_STORAGE_OPTIONS"
#: the pip package that implements each well-known scheme (named when it is missing)
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
#: schemes whose filesystems keep listing caches: off by default, since other processes write the same store and a
#: cached listing would hide their files (fsspec's own ``use_listings_cache`` option, overridable)
_NO_LISTING_CACHE = {"use_listings_cache": False}


class StorageOptionsError(UserError, ValueError):
    """A store URL or its storage options cannot be used (bad JSON, unknown scheme, backend not installed)."""


def _env_options() -> dict[str, Any]:
    raw = os.environ.get(ENV_OPTIONS, "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StorageOptionsError(f"{ENV_OPTIONS} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(options, dict):
        raise StorageOptionsError(f"{ENV_OPTIONS} must be a JSON object of storage options, got {raw[:60]!r}")
    return options


def _scheme(text: str) -> str | None:
    """The URL scheme of ``text`` (``None`` for a plain path; a Windows drive letter is not a scheme)."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum() else None


@dataclass(frozen=True, eq=False)
class StoreLocation:
    """A parsed store location; ``url`` is what messages show (the path as given, for local stores)."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the folder of a local store; ``None`` for a URL
    local: Path | None = None

    @classmethod
    def parse(cls, where: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> StoreLocation:
        """A location from a path or URL; ``storage_options`` default to :data:`ENV_OPTIONS`'s (URLs only)."""
        text = os.fspath(where)
        scheme = _scheme(text)
        if scheme is None:
            return cls(text, {}, Path(text))
        if scheme == "file":
            return cls(text, {}, Path(unquote(urlparse(text).path)))
        options = dict(storage_options) if storage_options is not None else _env_options()
        if scheme != "memory":
            options = {**_NO_LISTING_CACHE, **options}
        location = cls(text.rstrip("/"), options, None)
        location.fs  # noqa: B018 (fail here, with one line, when the backend is missing)
        return location

    # identity (a location is a cache key of worker processes) -------------------------------------------------

    def _key(self) -> tuple[str, str]:
        return self.url, json.dumps(dict(self.options), sort_keys=True, default=str)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreLocation) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.url

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "options": dict(self.options), "local": self.local}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # the filesystem ------------------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """A folder on this machine (LocalStore, POSIX locks)."""
        return self.local is not None

    @property
    def scheme(self) -> str:
        """``file`` for local stores, else the URL's scheme."""
        return "file" if self.local is not None else str(_scheme(self.url))

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (synchronous; cached per process, never pickled)."""
        cached = self.__dict__.get("_fs")
        if cached is None:
            cached = self._open_fs()
            object.__setattr__(self, "_fs", cached)
        return cached

    @property
    def root(self) -> str:
        """The store's path inside :attr:`fs`."""
        cached = self.__dict__.get("_root")
        if cached is None:
            self.fs  # noqa: B018
            cached = self.__dict__["_root"]
        return str(cached)

    def _open_fs(self) -> Any:
        try:
            import fsspec.core
        except ImportError:
            raise StorageOptionsError(f"{self.url}: stores on URLs need fsspec (pip install fsspec)") from None

        if self.local is not None:
            fs, root = fsspec.core.url_to_fs(str(self.local.absolute()))
            object.__setattr__(self, "_root", root)
            return fs
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **self.options)
        except ImportError as exc:
            package = _PACKAGES.get(self.scheme, "the fsspec backend for it")
            raise StorageOptionsError(
                f"{self.url}: {self.scheme}:// stores need the {package} package (pip install {package}): {exc}"
            ) from None
        except ValueError as exc:
            if "Protocol not known" in str(exc):
                raise StorageOptionsError(f"{self.url}: fsspec knows no {self.scheme}:// filesystem") from None
            raise StorageOptionsError(f"{self.url}: {exc}") from None
        except TypeError as exc:  # an option the filesystem does not take
            raise StorageOptionsError(f"{self.url}: bad storage options {dict(self.options)} ({exc})") from None
        object.__setattr__(self, "_root", root.rstrip("/"))
        return fs

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    # what the store needs ------------------------------------------------------------------------------------

    def zarr_target(self) -> tuple[str, dict[str, Any] | None]:
        """``(store, storage_options)`` for ``zarr.open_group``: the folder (LocalStore) or the URL (FsspecStore)."""
        if self.local is not None:
            return str(self.local), None
        return self.url, dict(self.options) or None

    def exists(self, key: str = "") -> bool:
        """Whether ``key`` (relative to the store; ``""``: the store itself) exists. A remote store exists when its
        root metadata does (object stores have no folders)."""
        if self.local is not None:
            return (self.local / key).exists()
        try:
            return bool(self.fs.exists(self._full(key or "zarr.json")))
        except Exception as exc:  # the first request to a store: unreachable endpoint, no credentials, no bucket
            raise StorageOptionsError(self.unreachable(exc)) from None

    def occupied(self) -> bool:
        """Whether anything is at the location already (a store or other files): creating a store there would
        delete it, since Zarr's "w" mode clears the prefix, so a new store needs an empty place (as a new folder)."""
        if self.local is not None:
            return self.local.exists()
        if self.exists():
            return True
        try:
            return bool(self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return False

    def unreachable(self, exc: BaseException) -> str:
        """One line for a store that cannot be reached (option values are not shown: they may hold secrets)."""
        names = ", ".join(sorted(self.options)) or "none"
        return (
            f"{self.url}: cannot reach the store ({type(exc).__name__}: {exc}); check the endpoint, the credentials "
            f"and the storage options (given: {names}; {ENV_OPTIONS} sets them for every process)"
        )

    def exists_many(self, keys: list[str]) -> dict[str, bool]:
        """Existence of several keys with as few requests as possible: one listing per folder holding two or more of
        them, one ``exists`` for a key alone in its folder (local stores: one ``stat`` each)."""
        if self.local is not None:
            return {k: (self.local / k).exists() for k in keys}
        by_dir: dict[str, list[str]] = {}
        for key in keys:
            by_dir.setdefault(key.rpartition("/")[0], []).append(key)
        out: dict[str, bool] = {}
        for folder, inside in by_dir.items():
            if len(inside) == 1:
                out[inside[0]] = self.exists(inside[0])
                continue
            try:
                listed = {str(p).rstrip("/") for p in self.fs.ls(self._full(folder), detail=False)}
            except FileNotFoundError:
                listed = set()
            out.update({k: self._full(k) in listed for k in inside})
        return out

    def remove(self, key: str, missing_ok: bool = True) -> None:
        """Delete one file/object ``key``."""
        if self.local is not None:
            (self.local / key).unlink(missing_ok=missing_ok)
            return
        try:
            self.fs.rm_file(self._full(key))
        except FileNotFoundError:
            if not missing_ok:
                raise

    def read_bytes(self, key: str) -> bytes:
        """Content of ``key`` (``FileNotFoundError`` naming the store and key when missing)."""
        if self.local is not None:
            return (self.local / key).read_bytes()
        try:
            return bytes(self.fs.cat_file(self._full(key)))
        except FileNotFoundError:
            raise FileNotFoundError(2, "no such object", self.display(key)) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` atomically: a temporary file renamed over it locally; one PUT of the whole object on an
        object store (never visible half-written)."""
        if self.local is not None:
            target = self.local / key
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
            return
        self.fs.pipe_file(self._full(key), data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist (an object store's conditional PUT); ``False`` when it did."""
        try:
            self.fs.pipe_file(self._full(key), data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            # S3 answers 409 ConditionalRequestConflict to a conditional PUT racing another on the same key (s3fs:
            # EBUSY): someone else is creating it, which is a lost race like FileExistsError
            if exc.errno == errno.EBUSY:
                return False
            raise
        return True

    def size(self, prefix: str) -> int:
        """Bytes stored under ``prefix`` (``fourm data info``)."""
        if self.local is not None:
            return sum(f.stat().st_size for f in (self.local / prefix).rglob("*") if f.is_file())
        try:
            return int(self.fs.du(self._full(prefix)))
        except FileNotFoundError:
            return 0

    def display(self, key: str = "") -> str:
        """``key`` as a message shows it (store URL or path, then the key)."""
        if self.local is not None:
            return str(self.local / key) if key else str(self.local)
        return f"{self.url}/{key}" if key else self.url


def as_location(
    where: StoreLocation | str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> StoreLocation:
    """``where`` as a :class:`StoreLocation` (a location given is kept as is)."""
    if isinstance(where, StoreLocation):
        return where
    return StoreLocation.parse(where, storage_options)
