"""Locks of a store: who may read-modify-write the root attributes, and who writes a block.

Two ``fourm data label`` processes on one store (on one machine or many) both read-modify-write the root attributes
(the part table) and may both claim the same block. :func:`root_lock` serialises the former; :func:`block_lock`
makes the second claimant of a block wait, then see the block is written and skip it.

Local stores: POSIX byte-range locks on files under ``<store>/.locks`` (one byte per block), released by the kernel
when a process dies, so a kill -9 never leaves a store locked.

Object stores (S3, GCS) have no locks and no rename, but they have a conditional PUT: "create this object only if
there is none" (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``), which exactly one of several racing writers
wins. A lock is then a *lease*: the object ``.locks/<name>.lease`` holding its owner (host, pid, a random token), a
time to live and a heartbeat counter. The holder rewrites it every third of the time to live and deletes it on
release. A waiter polls with backoff; a lease whose content has not changed for its time to live, as measured on the
waiter's own monotonic clock (so no two machines' clocks are compared), belongs to a dead writer (kill -9, a lost
machine). The waiter breaks it by conditionally creating ``.locks/<name>.broken.<token>``: only one waiter can
create that object for a given dead lease, and only that one deletes the lease and retakes it, so two waiters never
both break and both hold. Those markers are tiny and remain (one per crash). What a lease cannot guard against is a
holder frozen longer than the time to live (a suspended VM) that then resumes writing: keep
``FOURM_LEASE_SECONDS`` (default 60) well above any pause you expect.

``memory://`` stores live in one process: a thread lock per name does. Other schemes (no known conditional PUT)
raise one line at the first lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from fourm_core.storage.location import StorageOptionsError, StoreLocation

__all__ = ["LEASE_ENV", "LOCKS", "Lease", "block_lock", "lease_seconds", "root_lock"]

LOCKS = ".locks"
#: environment variable: a lease's time to live in seconds
LEASE_ENV = "FOURM_LEASE_SECONDS"
#: schemes whose filesystems make ``pipe_file(mode="create")`` a server-side conditional PUT
_CONDITIONAL = {"s3", "s3a", "gs", "gcs"}
_MEMORY_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


def lease_seconds() -> float:
    """The lease time to live (:data:`LEASE_ENV`, default 60 s)."""
    raw = os.environ.get(LEASE_ENV, "60")
    try:
        value = float(raw)
    except ValueError:
        raise StorageOptionsError(f"{LEASE_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise StorageOptionsError(f"{LEASE_ENV} must be positive, got {raw!r}")
    return value


@contextmanager
def _range_lock(path: Path, offset: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
    finally:
        os.close(fd)


@contextmanager
def _memory_lock(location: StoreLocation, name: str) -> Iterator[None]:
    with _MEMORY_GUARD:
        lock = _MEMORY_LOCKS.setdefault((location.url, name), threading.Lock())
    with lock:
        yield


class Lease:
    """An object-store lease (see the module docstring); a context manager."""

    def __init__(self, location: StoreLocation, name: str, ttl: float | None = None, poll: float = 0.05) -> None:
        self.location, self.key = location, f"{LOCKS}/{name}.lease"
        self.ttl = lease_seconds() if ttl is None else ttl
        self.poll = poll
        self.token = uuid.uuid4().hex
        self._beat = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: set by the heartbeat when another process took the lease over (this holder was presumed dead)
        self.lost = False

    def _body(self) -> bytes:
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}
        return json.dumps({**owner, "ttl": self.ttl, "beat": self._beat}).encode()

    def _read(self) -> bytes | None:
        try:
            return self.location.read_bytes(self.key)
        except FileNotFoundError:
            return None

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
            return body if isinstance(body, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def acquire(self) -> None:
        """Wait until this process holds the lease (breaking a dead holder's)."""
        seen: bytes | None = None
        seen_at = 0.0
        delay = self.poll
        while True:
            if self.location.create_bytes(self.key, self._body()):
                break
            current = self._read()
            if current is None:  # released between our create and our read (or still being created): try again
                time.sleep(self.poll * random.random())
                continue
            now = time.monotonic()
            if current != seen:
                seen, seen_at = current, now
            else:
                body = self._parse(current)
                ttl = float(body.get("ttl") or self.ttl)
                if now - seen_at > ttl:
                    marker = f"{self.key[: -len('.lease')]}.broken.{body.get('token') or uuid.uuid4().hex}"
                    if self.location.create_bytes(marker, self._body()):
                        self.location.remove(self.key)
                    seen = None
                    continue
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            current = self._read()
            if current is None or self._parse(current).get("token") != self.token:
                self.lost = True
                return
            self._beat += 1
            self.location.write_bytes(self.key, self._body())

    def release(self) -> None:
        """Stop the heartbeat and delete the lease (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self._read()
        if current is not None and self._parse(current).get("token") == self.token:
            self.location.remove(self.key)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def _lock(location: StoreLocation, name: str, offset: int) -> Iterator[None]:
    """POSIX lock (local), thread lock (memory) or lease (object stores) named ``name``."""
    if location.local is not None:
        with _range_lock(location.local / LOCKS / f"{name}.lock", offset):
            yield
        return
    if location.scheme == "memory":
        with _memory_lock(location, f"{name}.{offset}"):
            yield
        return
    if location.scheme not in _CONDITIONAL:
        raise StorageOptionsError(
            f"{location.url}: writing a {location.scheme}:// store needs locks, which need a conditional PUT "
            f"(create if absent); fourm knows one on {', '.join(f'{s}://' for s in sorted(_CONDITIONAL))} only"
        )
    with Lease(location, name if name == "root" else f"{name}.b{offset}"):
        yield


def root_lock(location: StoreLocation) -> AbstractContextManager[None]:
    """Exclusive lock of the store's root attributes (hold it across a read-modify-write of them)."""
    return _lock(location, "root", 0)


def block_lock(location: StoreLocation, part: str, block: int) -> AbstractContextManager[None]:
    """Exclusive lock of one block of one part (the claim of its one writer)."""
    return _lock(location, part.replace("/", "__"), block)
