"""Request accounting: every AWS request this process sends, and the DynamoDB item reads and writes
they are billed for.

``RequestCounter.attach(client)`` hooks one handler on the client's botocore event system
(``client.meta.events``: boto3 and aiobotocore clients alike). The unit is the *attempt*: the handler
runs on ``needs-retry``, which botocore emits once after every attempt of a call, the last one
included, with the HTTP response when one came back. Every attempt that got an HTTP response is
counted as one request, because AWS bills a retried call once per attempt it received; an attempt
that failed before any response (connection refused, DNS, a client-side timeout) is not counted,
since it may never have reached AWS. ``before-send`` would count those too, and it carries no
response, so a throttled or partially processed attempt could not be told apart.

DynamoDB capacity is counted per attempt as well, from the call's own parameters (read once per call
on ``before-parameter-build``) and its response:

- writes: ``PutItem``/``UpdateItem``/``DeleteItem`` are one item each; ``BatchWriteItem`` one per
  put or delete request, per table, less the ``UnprocessedItems`` of the response;
  ``TransactWriteItems`` one per entry (``ConditionCheck`` included), per table;
- reads: ``GetItem`` one item; ``BatchGetItem`` one per key, per table, less ``UnprocessedKeys``;
  ``TransactGetItems`` one per entry; ``Query``/``Scan`` one per call (their least charge);
- a refused conditional write (``ConditionalCheckFailedException``) is billed, so it counts; a
  throttled attempt consumes no capacity, so it counts as a request but not as items.

Counts live in plain dicts behind one lock (clients are used from several threads); nothing here
imports prometheus_client, so Lambda mode pays one dict update per attempt. ``snapshot`` is what a
metrics collector or a report reads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

THROTTLES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_CONTEXT_KEY = "vitalstream_dynamodb_items"
_WRITE_ONE = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_READ_ONE = frozenset({"GetItem", "Query", "Scan"})

ClientT = TypeVar("ClientT")
KeyT = TypeVar("KeyT")


@dataclass(frozen=True, slots=True)
class Items:
    """DynamoDB items by table name: ``writes`` and ``reads``."""

    writes: Mapping[str, int] = field(default_factory=dict)
    reads: Mapping[str, int] = field(default_factory=dict)


def requested_items(operation: str, params: Mapping[str, Any]) -> Items:
    """The items a DynamoDB call asks to write or read, by table (``Items()`` for other operations)."""
    if operation in _WRITE_ONE:
        return Items(writes={str(params.get("TableName", "")): 1})
    if operation in _READ_ONE:
        return Items(reads={str(params.get("TableName", "")): 1})
    if operation == "BatchWriteItem":
        return Items(writes=_per_table(params.get("RequestItems", {})))
    if operation == "BatchGetItem":
        return Items(reads=_keys_per_table(params.get("RequestItems", {})))
    if operation in ("TransactWriteItems", "TransactGetItems"):
        tables: Counter[str] = Counter()
        for entry in params.get("TransactItems", []):
            for action in entry.values():
                tables[str(action.get("TableName", ""))] += 1
        counted = dict(tables)
        return Items(writes=counted) if operation == "TransactWriteItems" else Items(reads=counted)
    return Items()


def billed_items(requested: Items, parsed: Mapping[str, Any]) -> Items:
    """What one attempt with the parsed response ``parsed`` is billed for out of ``requested``."""
    if parsed.get("Error", {}).get("Code") in THROTTLES:
        return Items()
    unprocessed_writes = _per_table(parsed.get("UnprocessedItems") or {})
    unprocessed_reads = _keys_per_table(parsed.get("UnprocessedKeys") or {})
    return Items(
        writes=_less(requested.writes, unprocessed_writes), reads=_less(requested.reads, unprocessed_reads)
    )


def _per_table(request_items: Mapping[str, Any]) -> dict[str, int]:
    return {str(table): len(requests) for table, requests in request_items.items()}


def _keys_per_table(request_items: Mapping[str, Any]) -> dict[str, int]:
    return {str(table): len(wanted.get("Keys", [])) for table, wanted in request_items.items()}


def _less(counts: Mapping[KeyT, int], minus: Mapping[KeyT, int]) -> dict[KeyT, int]:
    return {key: max(n - minus.get(key, 0), 0) for key, n in counts.items()}


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Totals since a counter was made: ``requests`` by (service, operation), items by table."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    item_writes: Mapping[str, int] = field(default_factory=dict)
    item_reads: Mapping[str, int] = field(default_factory=dict)

    def since(self, earlier: RequestCounts) -> RequestCounts:
        """The counts that ``earlier`` (a snapshot of the same counter) does not include."""
        return RequestCounts(
            _less(self.requests, earlier.requests),
            _less(self.item_writes, earlier.item_writes),
            _less(self.item_reads, earlier.item_reads),
        )

    def calls(self, service: str | None = None, operation: str | None = None) -> int:
        """Requests of ``service`` (every service when None), of ``operation`` when given."""
        return sum(
            n
            for (s, o), n in self.requests.items()
            if (service is None or s == service) and (operation is None or o == operation)
        )


class RequestCounter:
    """Counts the requests of every client it is attached to (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._writes: Counter[str] = Counter()
        self._reads: Counter[str] = Counter()

    def attach(self, client: ClientT) -> ClientT:
        """Count ``client``'s requests from now on; returns the client. Attach each client once."""
        events = client.meta.events  # type: ignore[attr-defined]  # any botocore/aiobotocore client
        events.register("before-parameter-build.dynamodb", _remember_items)
        events.register("needs-retry", self._on_attempt)
        return client

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return RequestCounts(dict(self._requests), dict(self._writes), dict(self._reads))

    def _on_attempt(
        self, event_name: str, response: tuple[Any, Mapping[str, Any]] | None, **kwargs: Any
    ) -> None:
        """``needs-retry.<service>.<Operation>``: returns None, so retry decisions are left alone."""
        if response is None:
            return  # no HTTP response: the request may never have reached AWS
        _, service, operation = event_name.split(".", 2)
        requested = kwargs.get("request_dict", {}).get("context", {}).get(_CONTEXT_KEY)
        self.count(
            service, operation, billed_items(requested, response[1]) if requested is not None else Items()
        )

    def count(self, service: str, operation: str, items: Items) -> None:
        """One request of ``service`` (botocore's hyphenated service id) and ``operation`` that was
        billed for ``items``."""
        with self._lock:
            self._requests[(service, operation)] += 1
            self._writes.update(items.writes)
            self._reads.update(items.reads)


def _remember_items(params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """Once per DynamoDB call: keep what it asks for in the request context, which every attempt sees."""
    context[_CONTEXT_KEY] = requested_items(str(model.name), params)
