"""The embedded AWS emulator: MiniStack on 127.0.0.1 by default (``service.tools.emulators.ministack``),
or moto's server, with its known Kinesis write race closed and SQS FIFO deduplication as SQS does it.

moto's ``Shard.put_record`` reads the shard's highest sequence number and then stores the record
under the next one, without a lock (its own comment says "not safe for concurrency"): two concurrent
PutRecords to one shard can take the same number and the second overwrites the first, so records are
lost. ``EmbeddedAws`` serialises every shard write — and the reads that iterate the same dict — with
one process-wide lock, installed in the emulator's own process; DynamoDB item writes get one too, so a
conditional write is atomic as in DynamoDB.

moto's FIFO queues drop a send whose ``MessageDeduplicationId`` matches a message *still in the
queue* (its check-then-append also unlocked); SQS drops it for 5 minutes after the first send, even
when that message was received and deleted since. ``EmbeddedAws`` remembers each accepted id for the
5 minutes, per queue (per message group under ``DeduplicationScope: messageGroup``), under a lock.

    with EmbeddedAws() as endpoint_url:
        ...  # boto3 clients with endpoint_url=endpoint_url
"""

from __future__ import annotations

import functools
import logging
import os
import select
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import Any

from service.tools.emulators.ministack import MiniStackServer
from service.tools.emulators.ministack import unavailable_reason as ministack_unavailable

EMULATOR_KEY = "testing"  # an emulator accepts any credentials; this one is not a secret

_KINESIS_LOCK = threading.RLock()
_DYNAMODB_LOCK = threading.RLock()
_SQS_LOCK = threading.Lock()
SQS_DEDUPLICATION_S = 300.0  # the SQS FIFO deduplication interval
_installed = False
_install_guard = threading.Lock()


def serialise_racy_writes() -> None:
    """Wrap moto's Kinesis shard reads/writes in one lock and its DynamoDB item writes in another
    (idempotent). moto checks a DynamoDB condition and applies the write without a lock, and its
    server answers on several threads: two conditional takes of one lease could both succeed, which
    real DynamoDB never allows. FIFO sends are deduplicated as SQS does (``_deduplicated``)."""
    global _installed  # noqa: PLW0603 - a once-per-process patch of moto's classes
    with _install_guard:
        if _installed:
            return
        from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415 - only when embedding
        from moto.kinesis.models import Shard  # noqa: PLC0415 - as above
        from moto.sqs.models import Queue  # noqa: PLC0415 - as above

        for name in ("put_record", "get_records"):
            setattr(Shard, name, _locked(getattr(Shard, name), _KINESIS_LOCK))
        for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
            setattr(DynamoDBBackend, name, _locked(getattr(DynamoDBBackend, name), _DYNAMODB_LOCK))
        setattr(Queue, "add_message", _deduplicated(Queue.add_message))  # noqa: B010 - mypy: no method assignment
        _installed = True


def _locked(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return locked


def _deduplicated(add_message: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """moto's ``Queue.add_message``, but a FIFO message whose deduplication id the queue accepted
    less than ``SQS_DEDUPLICATION_S`` ago (in its group, under ``messageGroup`` scope) is dropped,
    whether or not that first message is still in the queue. The caller's send still succeeds."""

    @functools.wraps(add_message)
    def add(queue: Any, message: Any) -> None:
        if not queue.fifo_queue or message.deduplication_id is None:
            add_message(queue, message)
            return
        per_group = queue.attributes.get("DeduplicationScope") == "messageGroup"
        scope = (message.group_id if per_group else None, message.deduplication_id)
        now = time.monotonic()
        with _SQS_LOCK:
            accepted: dict[tuple[str | None, str], float] = queue.__dict__.setdefault("_accepted_ids", {})
            for expired in [k for k, at in accepted.items() if now - at >= SQS_DEDUPLICATION_S]:
                del accepted[expired]
            if scope in accepted:
                return
            accepted[scope] = now
            add_message(queue, message)

    return add


def use_emulator_credentials() -> None:
    """For a process that talks only to an emulator: never send the caller's real AWS credentials."""
    os.environ.update(AWS_ACCESS_KEY_ID=EMULATOR_KEY, AWS_SECRET_ACCESS_KEY=EMULATOR_KEY)
    os.environ.pop("AWS_SESSION_TOKEN", None)


class Engine(StrEnum):
    """Which emulator serves the embedded stack's AWS APIs (one endpoint for every service)."""

    MINISTACK = "ministack"  # the default: chosen by bench/emulators.py (docs/performance.md)
    MOTO = "moto"


def emulator_missing(engine: Engine) -> str | None:
    """Why ``engine`` cannot start here (None: it can), naming what to install or choose instead."""
    if engine is Engine.MINISTACK:
        reason = ministack_unavailable()
        return None if reason is None else f"{reason}; or run with --emulator moto"
    return None


class EmbeddedAws:
    """The embedded AWS emulator on ``127.0.0.1:port`` (0 = any free port), in a child process of its
    own, serving every service the stack uses from one endpoint: MiniStack by default
    (``service.tools.emulators.ministack``), or moto's server (``Engine.MOTO``; pure Python, and sharing one
    GIL with the caller would halve a demo's throughput). Each emulator starts empty. ``start``
    returns the endpoint URL; ``stop`` ends the child and may be called more than once. Usable as a
    context manager."""

    def __init__(
        self, port: int = 0, startup_timeout_s: float = 60.0, engine: Engine = Engine.MINISTACK
    ) -> None:
        self._port, self._startup_timeout_s, self.engine = port, startup_timeout_s, engine
        self._process: subprocess.Popen[bytes] | None = None
        self._ministack: MiniStackServer | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("the embedded AWS emulator is not running")
        return self._endpoint_url

    @property
    def pid(self) -> int | None:
        """The emulator child's process id while it runs."""
        if self._ministack is not None:
            return self._ministack.pid
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        if self._endpoint_url is not None:
            return self._endpoint_url
        if self.engine is Engine.MINISTACK:
            self._ministack = MiniStackServer(self._port)
            self._endpoint_url = self._ministack.start(self._startup_timeout_s)
            return self._endpoint_url
        command = [sys.executable, "-m", "service.tools.emulator", "--port", str(self._port)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._process = process
        assert process.stdout is not None
        ready = select.select([process.stdout], [], [], self._startup_timeout_s)[0]
        line = process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the embedded AWS emulator did not start (said {line!r})")
        self._endpoint_url = line
        return line

    def stop(self) -> None:
        self._endpoint_url = None
        ministack, self._ministack = self._ministack, None
        if ministack is not None:
            ministack.stop()
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the child serves until its stdin closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_CFN_GAP_LOG = "No Moto CloudFormation support for %s"
_CFN_GAP_WARNING = r"Tried to parse .* but it's not supported by moto's CloudFormation implementation"


def quiet_cloudformation_gaps() -> None:
    """moto logs and warns for every resource type its CloudFormation skips; ``provision`` already
    reports each of those as a gap it filled through the service's own API, so the lines are noise."""
    logging.getLogger("moto").addFilter(lambda record: record.msg != _CFN_GAP_LOG)
    warnings.filterwarnings("ignore", message=_CFN_GAP_WARNING, category=UserWarning)


def serve(port: int) -> None:
    """The child's side: start moto with the write lock, print the endpoint, serve until stdin closes."""
    serialise_racy_writes()
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy import, only in the child

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per API call
    quiet_cloudformation_gaps()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    print(f"http://{host}:{bound}", flush=True)
    try:
        sys.stdin.read()  # returns when the parent closes our stdin (or exits)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    serve(int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0)
