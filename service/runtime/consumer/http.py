"""``/metrics``, ``/healthz`` and ``/readyz`` on one small asyncio HTTP/1.1 server (no extra dependency).

- ``/metrics``: the consumer's Prometheus registry, in the text exposition format.
- ``/healthz`` (liveness): 200 while the lease loop has completed a round recently; a wedged event
  loop or lease loop fails it, so Kubernetes restarts the pod.
- ``/readyz`` (readiness): 200 once the lease table is ready and the first shard sync is done, 503
  before that and from the moment shutdown begins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        live: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        self._registry, self._live, self._ready = registry, live, ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0: any free port); return the port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0].decode("latin-1")
            status, content_type, body = self._respond(method.decode("latin-1"), path)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return (200, "text/plain", b"ok\n") if self._live() else (503, "text/plain", b"stalled\n")
        if path == "/readyz":
            return (200, "text/plain", b"ready\n") if self._ready() else (503, "text/plain", b"not ready\n")
        return 404, "text/plain", b"not found\n"
