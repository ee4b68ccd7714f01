"""The embedded AWS emulator: moto's server on 127.0.0.1, with its known Kinesis write race closed.

moto's ``Shard.put_record`` reads the shard's highest sequence number and then stores the record
under the next one, without a lock (its own comment says "not safe for concurrency"): two concurrent
PutRecords to one shard can take the same number and the second overwrites the first, so records are
lost. ``EmbeddedAws`` serialises every shard write — and the reads that iterate the same dict — with
one process-wide lock. The patch is installed once per process and also covers any other moto server
running in the same process.

    with EmbeddedAws() as endpoint_url:
        ...  # boto3 clients with endpoint_url=endpoint_url
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

_KINESIS_LOCK = threading.RLock()
_installed = False
_install_guard = threading.Lock()


def serialise_kinesis_shard_access() -> None:
    """Wrap moto's ``Shard.put_record`` and ``Shard.get_records`` in one lock (idempotent)."""
    global _installed  # noqa: PLW0603 - a once-per-process patch of moto's class
    with _install_guard:
        if _installed:
            return
        from moto.kinesis.models import Shard  # noqa: PLC0415 - moto is only needed when embedding

        for name in ("put_record", "get_records"):
            setattr(Shard, name, _locked(getattr(Shard, name)))
        _installed = True


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _KINESIS_LOCK:
            return method(*args, **kwargs)

    return locked


class EmbeddedAws:
    """moto server on ``127.0.0.1:port`` (0 = any free port). ``start`` returns the endpoint URL;
    ``stop`` shuts it down and may be called more than once. Usable as a context manager."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("the embedded AWS emulator is not running")
        return self._endpoint_url

    def start(self) -> str:
        if self._endpoint_url is not None:
            return self._endpoint_url
        serialise_kinesis_shard_access()
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy import, only when started

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per API call
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server, self._endpoint_url = server, f"http://{host}:{port}"
        return self._endpoint_url

    def stop(self) -> None:
        server, self._server, self._endpoint_url = self._server, None, None
        if server is not None:
            server.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
