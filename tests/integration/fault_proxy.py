"""An HTTP proxy on 127.0.0.1 in front of the AWS endpoint that answers chosen calls with AWS's errors,
and counts every call that passes it (an outside count of what a process asks AWS for).

No emulator throttles by itself, so the consumer's back-off is proven by putting this between it and
the emulator: while a fault is switched on, matching requests get the error AWS would send (Kinesis
``ProvisionedThroughputExceededException``, DynamoDB 500 ``InternalServerError``, S3 503 ``SlowDown``,
S3 403 ``AccessDenied`` as a bucket policy or a missing IAM permission answers) and never reach the
emulator; everything else is forwarded unchanged.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from service.runtime.accounting import CapacityKey, billed_capacity, requested_items

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass(frozen=True)
class Fault:
    """Matches a request (target header, path, body) and says what to answer instead."""

    name: str
    matches: Callable[[str, str, bytes], bool]
    status: int
    body: bytes
    content_type: str


def kinesis_throttle(operation: str = "GetRecords") -> Fault:
    body = json.dumps({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded"})
    return Fault(
        f"kinesis {operation}",
        lambda target, _path, _body: target == f"Kinesis_20131202.{operation}",
        400,
        body.encode(),
        "application/x-amz-json-1.1",
    )


def dynamodb_error(table: str, operation: str = "UpdateItem") -> Fault:
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "x"})
    return Fault(
        f"dynamodb {operation}",
        lambda target, _path, data: target == f"DynamoDB_20120810.{operation}" and table.encode() in data,
        500,
        body.encode(),
        "application/x-amz-json-1.0",
    )


def s3_slow_down(bucket: str) -> Fault:
    body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    return Fault(
        "s3",
        lambda target, path, _data: not target and path.startswith(f"/{bucket}/"),
        503,
        body,
        "application/xml",
    )


def s3_access_denied(bucket: str, prefix: str = "") -> Fault:
    """Every S3 request under ``bucket``/``prefix`` refused, as a missing s3:PutObject permission is."""
    body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    return Fault(
        "s3 access denied",
        lambda target, path, _data: not target and path.startswith(f"/{bucket}/{prefix}"),
        403,
        body,
        "application/xml",
    )


_TARGET_PREFIXES = {"DynamoDB_20120810": "dynamodb", "Kinesis_20131202": "kinesis", "AmazonSQS": "sqs"}


def call_of(method: str, path: str, target: str, data: bytes) -> tuple[str, str]:
    """(service, operation) of one request: JSON protocols by their target header, SNS by its query
    action, anything else as S3 by method and path."""
    if target:
        prefix, _, operation = target.partition(".")
        return _TARGET_PREFIXES.get(prefix, prefix), operation
    if method == "POST" and (data.startswith(b"Action=") or b"&Action=" in data):
        action = parse_qs(data.decode(errors="replace")).get("Action", ["?"])[0]
        return "sns", action
    key = urlsplit(path).path.strip("/").partition("/")[2]
    names = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    if not key:
        return "s3", "ListObjects" if method == "GET" else f"{method}Bucket"
    return "s3", names.get(method, method)


def item_writes(operation: str, data: bytes) -> dict[str, int]:
    """DynamoDB item writes a request asks for, by table (1 per PutItem/UpdateItem/DeleteItem)."""
    if operation not in {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}:
        return {}
    body = json.loads(data or b"{}")
    if operation == "BatchWriteItem":
        return {table: len(requests) for table, requests in body.get("RequestItems", {}).items()}
    if operation == "TransactWriteItems":
        writes: Counter[str] = Counter()
        for item in body.get("TransactItems", []):
            for action in item.values():
                writes[action["TableName"]] += 1
        return dict(writes)
    return {body["TableName"]: 1}


def item_reads(operation: str, data: bytes) -> dict[str, int]:
    """DynamoDB items a request asks to read, by table (a Query or Scan at its least: 1)."""
    if operation not in {"GetItem", "BatchGetItem", "Query", "Scan"}:
        return {}
    body = json.loads(data or b"{}")
    if operation == "BatchGetItem":
        return {table: len(request["Keys"]) for table, request in body.get("RequestItems", {}).items()}
    return {body["TableName"]: 1}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}  # answers given instead of the endpoint's, by fault name
        self.calls: Counter[tuple[str, str]] = Counter()  # (service, operation) of every request
        self.item_writes: Counter[str] = Counter()  # DynamoDB item writes asked for, by table
        self.item_reads: Counter[str] = Counter()  # DynamoDB items read asked for, by table
        # DynamoDB capacity units by (table, kind, source): the ConsumedCapacity of each response, or
        # one unit per item where a response reports none (``accounting.billed_capacity``)
        self.capacity_units: dict[CapacityKey, float] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                proxy._count(self.command, self.path, target, data)
                fault = proxy._match(target, self.path, data)
                if fault is not None:
                    self._answer(fault.status, fault.body, {"Content-Type": fault.content_type})
                    return
                status, body, headers = proxy._forward(self.command, self.path, dict(self.headers), data)
                proxy._count_capacity(target, data, status, body, headers)
                self._answer(status, body, headers)

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in _HOP and name.lower() != "host":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @contextmanager
    def inject(self, *faults: Fault) -> Iterator[None]:
        with self._lock:
            self._faults.extend(faults)
        try:
            yield
        finally:
            with self._lock:
                for fault in faults:
                    self._faults.remove(fault)

    def _count(self, method: str, path: str, target: str, data: bytes) -> None:
        service, operation = call_of(method, path, target, data)
        writes = item_writes(operation, data) if service == "dynamodb" else {}
        reads = item_reads(operation, data) if service == "dynamodb" else {}
        with self._lock:
            self.calls[(service, operation)] += 1
            self.item_writes.update(writes)
            self.item_reads.update(reads)

    def _count_capacity(
        self, target: str, data: bytes, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        if not target.startswith("DynamoDB_") or "gzip" in headers.get("Content-Encoding", ""):
            return
        operation = target.split(".", 1)[1]
        try:
            answer = json.loads(body or b"{}")
            requested = requested_items(operation, json.loads(data or b"{}"))
        except ValueError:
            return
        parsed = answer if status < 400 else {"Error": {"Code": str(answer.get("__type", "")).split("#")[-1]}}
        units = billed_capacity(operation, requested, parsed)
        with self._lock:
            for key, n in units.items():
                self.capacity_units[key] = self.capacity_units.get(key, 0.0) + n

    def _match(self, target: str, path: str, data: bytes) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(target, path, data):
                    self.injected[fault.name] = self.injected.get(fault.name, 0) + 1
                    return fault
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], data: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=60)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in _HOP}  # Host kept: signed
            connection.request(method, path, body=data or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()
