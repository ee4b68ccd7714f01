"""One shard's sandbox for the local event source mapping: the function runs in a process of its own.

On AWS each shard's invocations run in an execution environment of their own; here, with
``Isolated``, each shard poller starts one worker process (``multiprocessing``, spawn: a fresh
interpreter that imports only what the function imports) and hands it every invocation over a pipe:
the Lambda event goes as JSON, the response comes back as JSON, so nothing but what Lambda would
carry crosses the boundary. The worker imports the function once, on its first invocation's start
(a cold start), and keeps its module state (caches, clients) between invocations, as a warm sandbox
does. A function that raises is a function error (``FunctionError``), the worker lives on; a worker
that dies (crash, ``os._exit``) is a function error too, and the next invocation gets a new worker.

``Isolated.probe``, when given, names a callable of the function's module whose result (any picklable
value, e.g. the module's request counts) comes back with every response: the parent keeps the latest
per worker (``WorkerSandbox.probes``), so what a sandbox counted is readable outside it.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

Handler = Callable[[dict[str, Any], Any], Any]
_START_TIMEOUT_S = 60.0


class FunctionError(Exception):
    """The invocation failed: the function raised (its type and message) or its worker died."""


@dataclass(frozen=True, slots=True)
class Isolated:
    """A function to run in a worker process per shard: ``"package.module:attribute"`` (attributes
    may be dotted, e.g. ``"lambda_shim.handler:REQUESTS.snapshot"`` for a probe)."""

    function: str
    probe: str | None = None
    output: str | None = None  # a file the worker's stdout appends to (its CloudWatch Logs); None: inherited


class Sandbox(Protocol):
    def invoke(self, event: dict[str, Any], context: Any) -> Any: ...

    def close(self) -> None: ...


class InProcess:
    """The function called in the mapping's own process (tests that inject faults into it)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def invoke(self, event: dict[str, Any], context: Any) -> Any:
        try:
            return self._handler(event, context)
        except Exception as exc:  # any exception is a function error to Lambda
            raise FunctionError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        pass


class WorkerSandbox:
    """One shard's worker process; ``invoke`` is called from the shard's poller thread only."""

    def __init__(self, isolated: Isolated, name: str) -> None:
        self._isolated, self._name = isolated, name
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._connection: Connection | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self.probes: dict[int, Any] = {}  # worker generation → its latest probe result

    def invoke(self, event: dict[str, Any], context: Any) -> Any:
        connection = self._connection or self._start()
        request = json.dumps(
            {
                "event": event,
                "context": {
                    "invoked_function_arn": getattr(context, "invoked_function_arn", ""),
                    "aws_request_id": getattr(context, "aws_request_id", ""),
                },
            },
            separators=(",", ":"),
        )
        try:
            connection.send_bytes(request.encode())
            outcome, body, probe = connection.recv()
        except (EOFError, OSError) as exc:
            self._stop_worker()
            raise FunctionError(f"the worker process died ({type(exc).__name__})") from exc
        if self._isolated.probe is not None:
            with self._lock:
                self.probes[self._generation] = probe
        if outcome != "ok":
            raise FunctionError(body)
        return json.loads(body)

    def latest_probes(self) -> list[Any]:
        with self._lock:
            return list(self.probes.values())

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()  # the worker sees EOF and exits
        self._stop_worker()

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        self._generation += 1
        process = self._context.Process(
            target=serve,
            args=(child, self._isolated.function, self._isolated.probe, self._isolated.output),
            name=f"{self._name}#{self._generation}",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._connection = process, parent
        return parent

    def _stop_worker(self) -> None:
        process, self._process, self._connection = self._process, None, None
        if process is None:
            return
        process.join(_START_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


class _Context:
    function_name = "vitalstream"
    memory_limit_in_mb = 512

    def __init__(self, fields: dict[str, str]) -> None:
        self.invoked_function_arn = fields.get("invoked_function_arn", "")
        self.aws_request_id = fields.get("aws_request_id", "")

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def resolve(reference: str) -> Any:
    """``"package.module:attribute.attribute"`` → that object."""
    module, _, attributes = reference.partition(":")
    target: Any = importlib.import_module(module)
    for name in attributes.split("."):
        target = getattr(target, name)
    return target


def serve(connection: Connection, function: str, probe: str | None, output: str | None = None) -> None:
    """The worker's loop: one request in, one reply out, until the parent closes the pipe."""
    if output is not None:
        sys.stdout = open(output, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - the worker's for life
    handler: Handler = resolve(function)
    probing: Callable[[], Any] | None = resolve(probe) if probe else None
    while True:
        try:
            request = json.loads(connection.recv_bytes())
        except EOFError:
            return
        try:
            response = handler(request["event"], _Context(request["context"]))
            reply = ("ok", json.dumps(response, separators=(",", ":")))
        except Exception as exc:  # any exception is a function error to Lambda
            reply = ("error", f"{type(exc).__name__}: {exc}")
        connection.send((*reply, probing() if probing else None))
