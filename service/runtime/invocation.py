"""What one Lambda invocation did (``Invocation``), and its structured log lines.

The shim gathers an ``Invocation`` from the event, the processor's outcome and the invocation's share
of the container's request counts (``RequestCounts.since``); ``service.runtime.emf`` turns it into
the invocation's EMF line and ``log_lines`` into its JSON log lines, in the shape both modes share
(``service.runtime.logs``): one line per invocation (``batch processed``, or ``invocation failed``
with the exception's type when it raised) with the shard, the sequence range, the batch size and
the failures, and one per distinct sink-error cause with its AWS error code. Pure: time and the
Lambda context come in as arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from service.core import BatchResult
from service.runtime.accounting import RequestCounts
from service.runtime.logs import entry
from service.runtime.ports import SinkError, distinct
from service.runtime.sink_health import SINK_ERROR_MESSAGE, cause_fields

if TYPE_CHECKING:
    from service.runtime.pipeline import BatchOutcome
    from service.runtime.window import WindowOutcome

BATCH_MESSAGE = "batch processed"
FAILED_MESSAGE = "invocation failed"
_CONTEXT_KEYS = (  # Powertools Logger's key, the Lambda context's attribute
    ("function_name", "function_name"),
    ("function_memory_size", "memory_limit_in_mb"),
    ("function_arn", "invoked_function_arn"),
    ("function_request_id", "aws_request_id"),
)


class Mode(StrEnum):
    """How the function keeps device states: read and written every batch, or in a tumbling window."""

    BATCH = "batch"
    WINDOW = "window"
    ARCHIVE = "archive"  # the archive role: no device state, one archive file per invocation


@dataclass(frozen=True, slots=True)
class WindowFacts:
    state_bytes: int  # JSON size of the state the invocation returned (Lambda's limit: 1 MB)
    devices_loaded: int  # read from the device table by this invocation
    devices_written: int  # written to the device table by this invocation
    devices_queued: int  # whose write waits for a later invocation (paced: no invocation holds the shard)
    closed: bool  # the window ended here (final invocation, terminated early, or past its budget)
    devices_adopted: int = 0  # taken over from a handoff by the window's first invocation
    devices_handed_off: int = 0  # handed on to the shard's next window by its final invocation


@dataclass(frozen=True, slots=True)
class EventSpan:
    """The Kinesis records of one event: shard, first and last sequence numbers, how many."""

    shard_id: str
    first: str | None
    last: str | None
    records: int

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> EventSpan:
        records: Sequence[Mapping[str, Any]] = event.get("Records") or []
        shard = event.get("shardId") or (
            str(records[0].get("eventID", "")).partition(":")[0] if records else ""
        )
        numbers = sorted(
            (str(r.get("kinesis", {}).get("sequenceNumber", "")) for r in records),
            key=lambda s: int(s) if s.isdigit() else -1,
        )
        return cls(
            str(shard), numbers[0] if numbers else None, numbers[-1] if numbers else None, len(records)
        )


@dataclass(frozen=True, slots=True)
class Invocation:
    """One invocation: its event's span, what the core and the sinks made of it, what it cost.

    ``result`` None: nothing ran through the core (an empty event, or the invocation raised before it
    returned an outcome). ``error``: the invocation raised (a refused window commit); Lambda retries it."""

    mode: Mode
    span: EventSpan
    duration_ms: int = 0  # from the event's arrival in the handler to its lines
    requests: RequestCounts = field(default_factory=RequestCounts)
    result: BatchResult | None = None
    failed_devices: frozenset[str] = frozenset()
    failures: int = 0  # batchItemFailures reported
    errors: tuple[SinkError, ...] = ()
    window: WindowFacts | None = None
    error: str | None = None  # the type of the exception the invocation raised

    @property
    def raised(self) -> bool:
        return self.error is not None


def context_fields(context: object, cold_start: bool) -> dict[str, Any]:
    """Powertools Logger's Lambda keys: ``cold_start`` and the context's ``function_*`` (those it has)."""
    fields: dict[str, Any] = {"cold_start": cold_start}
    for key, attribute in _CONTEXT_KEYS:
        value = getattr(context, attribute, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            fields[key] = value
    return fields


def span_fields(invocation: Invocation) -> dict[str, Any]:
    """The keys the consumer binds to its lines too: shard and sequence range, with batch size."""
    span = invocation.span
    return {
        "shard_id": span.shard_id,
        "first_sequence": span.first,
        "last_sequence": span.last,
        "batch_size": span.records,
    }


def log_lines(invocation: Invocation, *, service: str, context: Mapping[str, Any], now_ms: int) -> list[str]:
    """The invocation's JSON log lines: its summary, then one per distinct sink-error cause."""
    where = span_fields(invocation)
    summary: dict[str, Any] = {"mode": invocation.mode.value, "failures": invocation.failures}
    if invocation.result is not None:
        summary["samples"] = len(invocation.result.processed)
        summary["rejects"] = len(invocation.result.rejects)
        summary["alerts"] = len(invocation.result.alerts)
    if invocation.window is not None:
        summary["window_closed"] = invocation.window.closed
        summary["window_state_bytes"] = invocation.window.state_bytes
    level, message = ("INFO", BATCH_MESSAGE)
    if invocation.error is not None:
        level, message, summary["error"] = "ERROR", FAILED_MESSAGE, invocation.error
    lines = [entry(level, message, now_ms, service, context, where, summary)]
    for error in distinct(invocation.errors):
        level = "ERROR" if error.permanent else "WARNING"
        lines.append(entry(level, SINK_ERROR_MESSAGE, now_ms, service, context, where, cause_fields(error)))
    return [json.dumps(line) for line in lines]


def of_batch(span: EventSpan, outcome: BatchOutcome | None) -> Invocation:
    """A per-batch invocation (``Pipeline.run``'s ``outcome``; None: the event had no records)."""
    if outcome is None:
        return Invocation(Mode.BATCH, span)
    return Invocation(
        Mode.BATCH,
        span,
        result=outcome.result,
        failed_devices=outcome.failed_devices,
        failures=len(outcome.failures),
        errors=outcome.errors,
    )


def of_window(span: EventSpan, outcome: WindowOutcome, state_bytes: int) -> Invocation:
    """A tumbling-window invocation that returned ``outcome`` with a state of ``state_bytes``."""
    facts = WindowFacts(
        state_bytes,
        outcome.loaded,
        outcome.written,
        outcome.queued,
        closed=outcome.closed,
        devices_adopted=outcome.adopted,
        devices_handed_off=outcome.handed_off,
    )
    return Invocation(
        Mode.WINDOW,
        span,
        result=outcome.result,
        failed_devices=outcome.failed_devices,
        failures=len(outcome.failures),
        errors=outcome.errors,
        window=facts,
    )
