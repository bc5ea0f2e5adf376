"""A real S3-compatible server on 127.0.0.1 for tests: moto's server mode (HTTP, the S3 REST protocol), started in a
thread, so stores on ``s3://`` are tested through the same client (s3fs, botocore) a cluster would use, never a mock
of that client.

``local_s3()`` starts the server on a free port, creates a bucket and yields an :class:`S3Server`: its endpoint,
``storage_options`` for the Python API and ``env`` for subprocesses (fake credentials and
``FOURM_STORAGE_OPTIONS``). ``serve_or_skip()`` is the body of a pytest fixture that skips, naming the missing
package, when moto or s3fs is not installed (``pip install 'moto[server]' s3fs``, both in the ``test`` extra).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fourm_core.storage.location import ENV_OPTIONS

__all__ = ["S3Server", "local_s3", "serve_or_skip"]

#: what botocore needs to sign requests; moto accepts any key
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """A running local S3 server with one bucket."""

    endpoint: str
    bucket: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def url(self, key: str) -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key}"

    @property
    def env(self) -> dict[str, str]:
        """Environment of a subprocess that reaches this server (credentials and storage options)."""
        return {**FAKE_CREDENTIALS, ENV_OPTIONS: json.dumps(self.storage_options)}


@contextmanager
def local_s3(bucket: str = "fourm-test") -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (a free port), create ``bucket``, set fake credentials in this process's
    environment while it runs; stop it afterwards."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    saved = {k: os.environ.get(k) for k in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        port = server._server.server_address[1]  # type: ignore[union-attr]  # moto keeps the bound socket here
        endpoint = f"http://127.0.0.1:{port}"
        options = {"endpoint_url": endpoint}
        s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir(bucket)
        yield S3Server(endpoint, bucket, options)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def serve_or_skip() -> Iterator[S3Server]:
    """The body of a pytest fixture: a local S3 server with a bucket, or a skip naming what to install when
    moto[server] or s3fs is missing. ``yield from serve_or_skip()`` in a fixture of the test module."""
    import pytest

    pytest.importorskip("moto.server", reason="the local S3 server needs moto[server] (pip install 'moto[server]')")
    pytest.importorskip("s3fs", reason="s3:// stores need s3fs (pip install s3fs)")
    with local_s3() as server:
        yield server
