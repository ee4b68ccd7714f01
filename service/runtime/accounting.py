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

Capacity units are counted as DynamoDB reports them: ``attach`` makes every DynamoDB call that
accepts it ask ``ReturnConsumedCapacity="TOTAL"`` (unless the caller asked for more), and each
attempt adds the ``ConsumedCapacity`` of its response — one entry, or a list of one per table
(``BatchGetItem``, ``BatchWriteItem``, transactions) — by table and kind (``read``/``write``), with
``source="reported"``. An entry's ``ReadCapacityUnits``/``WriteCapacityUnits`` are taken when given,
otherwise its ``CapacityUnits`` count as the operation's kind. When a response that is billed carries
no ``ConsumedCapacity``, or reports 0 units in all (an emulator that omits it, or LocalStack's
BatchGetItem, which reports 0; a refused conditional write, whose error response
has none), the item counts above stand in, one unit per item, with ``source="estimated"``: the two
are kept apart, never summed into one figure unawares.

Counts live in plain dicts behind one lock (clients are used from several threads); nothing here
imports prometheus_client, so Lambda mode pays one dict update per attempt. ``snapshot`` is what a
metrics collector or a report reads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

THROTTLES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
_CONTEXT_KEY = "vitalstream_dynamodb_items"
_WRITE_ONE = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_READ_ONE = frozenset({"GetItem", "Query", "Scan"})
_READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
_ASK = "ReturnConsumedCapacity"


class Kind(StrEnum):
    """What a capacity unit pays for."""

    READ = "read"
    WRITE = "write"


class Source(StrEnum):
    """Where a capacity figure comes from."""

    REPORTED = "reported"  # the ConsumedCapacity of DynamoDB's response
    ESTIMATED = "estimated"  # one unit per item billed: the response reported none


CapacityKey = tuple[str, Kind, Source]  # table, kind, source

ClientT = TypeVar("ClientT")
KeyT = TypeVar("KeyT")
NumberT = TypeVar("NumberT", int, float)


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


def consumed_capacity(operation: str, parsed: Mapping[str, Any]) -> dict[tuple[str, Kind], float] | None:
    """The capacity units a DynamoDB response reports, by (table, kind); None when it reports none."""
    reported = parsed.get("ConsumedCapacity")
    if reported is None:
        return None
    units: dict[tuple[str, Kind], float] = {}
    for entry in [reported] if isinstance(reported, Mapping) else reported:
        table = str(entry.get("TableName", ""))
        read, write = entry.get("ReadCapacityUnits"), entry.get("WriteCapacityUnits")
        if read is None and write is None:
            kind = Kind.READ if operation in _READ_OPERATIONS else Kind.WRITE
            _add(units, (table, kind), float(entry.get("CapacityUnits", 0.0)))
            continue
        _add(units, (table, Kind.READ), float(read or 0.0))
        _add(units, (table, Kind.WRITE), float(write or 0.0))
    return units


def _add(units: dict[KeyT, float], key: KeyT, n: float) -> None:
    units[key] = units.get(key, 0.0) + n


def billed_capacity(operation: str, requested: Items, parsed: Mapping[str, Any]) -> dict[CapacityKey, float]:
    """The capacity units one attempt is billed for: reported by DynamoDB, or estimated from its items
    (one unit each) when the response reports none; nothing for a throttled attempt."""
    if parsed.get("Error", {}).get("Code") in THROTTLES:
        return {}
    return _capacity(operation, billed_items(requested, parsed), parsed)


def _capacity(operation: str, items: Items, parsed: Mapping[str, Any]) -> dict[CapacityKey, float]:
    """``billed_capacity`` given the attempt's billed ``items`` (empty for a throttled attempt)."""
    reported = consumed_capacity(operation, parsed)
    # DynamoDB bills every call that touches an item at least half a unit: a report of nothing at all
    # is an emulator's omission (LocalStack's BatchGetItem), counted as none
    if reported is not None and sum(reported.values()) > 0:
        return {(table, kind, Source.REPORTED): n for (table, kind), n in reported.items()}
    estimated: dict[CapacityKey, float] = {}
    for kind, counts in ((Kind.WRITE, items.writes), (Kind.READ, items.reads)):
        for table, n in counts.items():
            estimated[(table, kind, Source.ESTIMATED)] = float(n)
    return estimated


def _per_table(request_items: Mapping[str, Any]) -> dict[str, int]:
    return {str(table): len(requests) for table, requests in request_items.items()}


def _keys_per_table(request_items: Mapping[str, Any]) -> dict[str, int]:
    return {str(table): len(wanted.get("Keys", [])) for table, wanted in request_items.items()}


def _less(counts: Mapping[KeyT, NumberT], minus: Mapping[KeyT, NumberT]) -> dict[KeyT, NumberT]:
    return {key: max(n - minus.get(key, 0), 0) for key, n in counts.items()}


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Totals since a counter was made: ``requests`` by (service, operation), items by table, capacity
    units by (table, kind, source)."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    item_writes: Mapping[str, int] = field(default_factory=dict)
    item_reads: Mapping[str, int] = field(default_factory=dict)
    capacity_units: Mapping[CapacityKey, float] = field(default_factory=dict)

    def since(self, earlier: RequestCounts) -> RequestCounts:
        """The counts that ``earlier`` (a snapshot of the same counter) does not include."""
        return RequestCounts(
            _less(self.requests, earlier.requests),
            _less(self.item_writes, earlier.item_writes),
            _less(self.item_reads, earlier.item_reads),
            _less(self.capacity_units, earlier.capacity_units),
        )

    def units(self, kind: Kind, source: Source | None = None, table: str | None = None) -> float:
        """Capacity units of ``kind``, of ``source`` and ``table`` when given (every one when None)."""
        return sum(
            n
            for (t, k, s), n in self.capacity_units.items()
            if k == kind and (source is None or s == source) and (table is None or t == table)
        )

    def calls(self, service: str | None = None, operation: str | None = None) -> int:
        """Requests of ``service`` (every service when None), of ``operation`` when given."""
        return calls_in(self.requests, service, operation)


def summed(counts: Iterable[RequestCounts]) -> RequestCounts:
    """The totals of several counters (e.g. one per process)."""
    requests: Counter[tuple[str, str]] = Counter()
    writes: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    units: dict[CapacityKey, float] = {}
    for each in counts:
        requests.update(each.requests)
        writes.update(each.item_writes)
        reads.update(each.item_reads)
        for key, n in each.capacity_units.items():
            units[key] = units.get(key, 0.0) + n
    return RequestCounts(dict(requests), dict(writes), dict(reads), units)


def calls_in(
    requests: Mapping[tuple[str, str], NumberT], service: str | None = None, operation: str | None = None
) -> NumberT:
    """The ``requests`` (by service and operation) of ``service`` (every one when None), of
    ``operation`` when given."""
    return sum(
        (
            n
            for (s, o), n in requests.items()
            if (service is None or s == service) and (operation is None or o == operation)
        ),
        start=0,
    )


class RequestCounter:
    """Counts the requests of every client it is attached to (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._writes: Counter[str] = Counter()
        self._reads: Counter[str] = Counter()
        self._units: dict[CapacityKey, float] = {}

    def attach(self, client: ClientT) -> ClientT:
        """Count ``client``'s requests from now on; returns the client. Attach each client once.

        Its DynamoDB calls ask for ``ReturnConsumedCapacity="TOTAL"`` from now on (see the module)."""
        events = client.meta.events  # type: ignore[attr-defined]  # any botocore/aiobotocore client
        events.register("before-parameter-build.dynamodb", _remember_items)
        events.register("needs-retry", self._on_attempt)
        return client

    def snapshot(self) -> RequestCounts:
        with self._lock:
            return RequestCounts(
                dict(self._requests), dict(self._writes), dict(self._reads), dict(self._units)
            )

    def _on_attempt(
        self, event_name: str, response: tuple[Any, Mapping[str, Any]] | None, **kwargs: Any
    ) -> None:
        """``needs-retry.<service>.<Operation>``: returns None, so retry decisions are left alone."""
        if response is None:
            return  # no HTTP response: the request may never have reached AWS
        _, service, operation = event_name.split(".", 2)
        requested = kwargs.get("request_dict", {}).get("context", {}).get(_CONTEXT_KEY)
        if requested is None:
            self.count(service, operation, Items())
            return
        parsed = response[1]
        items = billed_items(requested, parsed)  # empty for a throttled attempt: no capacity either
        self.count(service, operation, items, _capacity(operation, items, parsed))

    def count(
        self, service: str, operation: str, items: Items, units: Mapping[CapacityKey, float] | None = None
    ) -> None:
        """One request of ``service`` (botocore's hyphenated service id) and ``operation`` that was
        billed for ``items`` and capacity ``units``."""
        with self._lock:
            self._requests[(service, operation)] += 1
            self._writes.update(items.writes)
            self._reads.update(items.reads)
            for unit, n in (units or {}).items():
                _add(self._units, unit, n)


def _remember_items(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """Once per DynamoDB call: ask for the capacity it consumes (when the operation takes the parameter
    and the caller did not ask already), and keep what it asks for in the request context, which
    every attempt sees."""
    if _ASK in model.input_shape.members:
        params.setdefault(_ASK, "TOTAL")
    context[_CONTEXT_KEY] = requested_items(str(model.name), params)
