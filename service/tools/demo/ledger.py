"""What the demo counts while it runs: each sample's first acknowledgement and its latency.

A Kinesis record carries one message, and a message one sample or a batch of them
(``service.tools.demo.samples``); a sample is known by shard, sequence number and its index in the
message. A record's samples are acknowledged when an invocation that carried it returned and its
sequence number is below the lowest ``batchItemFailures`` entry (Lambda checkpoints there; the rest
comes again, the whole record). A sample's latency is from its own device timestamp to that moment:
every sink has written by then (a batched sample's includes the time it waited on the device).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from service.core.telemetry import parse_rfc3339_ms
from service.tools.demo.samples import single_samples

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def percentile(sorted_values: Sequence[int], quantile: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(quantile * len(sorted_values) + 0.5)))
    return float(sorted_values[rank - 1])


class AckLedger:
    """Thread-safe: the event-source-mapping threads write, the live view reads."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._acked: set[tuple[str, str, int]] = set()
        self._latencies: list[int] = []

    @property
    def acknowledged(self) -> int:
        with self._lock:
            return len(self._acked)

    def wrap(self, handler: Handler) -> Handler:
        """``handler``, noting what each invocation acknowledged."""

        def noting(event: dict[str, Any], context: Any) -> Any:
            response = handler(event, context)
            self.note(event, response, self._clock_ms())
            return response

        return noting

    def observe(self, event: dict[str, Any], response: Any) -> None:
        """``note`` at the moment the response came back (``esm.Invocation.observe``)."""
        self.note(event, response, self._clock_ms())

    def note(self, event: dict[str, Any], response: Any, ack_ms: int) -> None:
        failures = [f.get("itemIdentifier", "") for f in (response or {}).get("batchItemFailures", [])]
        lowest = min((int(f) for f in failures if str(f).isdigit()), default=None)
        fresh: list[int] = []
        with self._lock:
            for record in event["Records"]:
                kinesis = record["kinesis"]
                sequence = kinesis["sequenceNumber"]
                if lowest is not None and int(sequence) >= lowest:
                    continue
                shard = record["eventID"].partition(":")[0]
                for sub, sample in enumerate(_samples(kinesis["data"])):
                    key = (shard, sequence, sub)
                    if key in self._acked:
                        continue
                    self._acked.add(key)
                    event_ms = _device_time(sample)
                    if event_ms is not None:
                        fresh.append(ack_ms - event_ms)
            self._latencies.extend(fresh)

    def latency(self) -> LatencySummary:
        with self._lock:
            values = sorted(self._latencies)
        return LatencySummary(
            len(values), percentile(values, 0.50), percentile(values, 0.95), percentile(values, 0.99)
        )


class PublishedAlerts:
    """Detection latency in Lambda mode, where no process of ours sees an alert published: from each
    alert's ``detectedAt`` (the device time of the sample that raised it) to the time SQS took it from
    SNS into the demo's subscriber queue (``SentTimestamp``) — the first time a subscriber could see it,
    whenever the demo polls. An alert published again (a retry; SNS is put-if-absent here, but a
    subscriber must expect it) counts once, at its first arrival. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: dict[str, int] = {}

    def note(self, alert: dict[str, Any], sent_ms: int) -> None:
        detected = alert.get("detectedAt")
        detected_ms = parse_rfc3339_ms(detected) if isinstance(detected, str) else None
        key = str(alert.get("alertId") or "")
        if detected_ms is None or not key or sent_ms <= 0:
            return
        with self._lock:
            latency = max(sent_ms - detected_ms, 0)
            self._first[key] = min(latency, self._first.get(key, latency))

    def latency(self) -> LatencySummary:
        with self._lock:
            values = sorted(self._first.values())
        return LatencySummary(
            len(values), percentile(values, 0.50), percentile(values, 0.95), percentile(values, 0.99)
        )


def _samples(data: str) -> list[bytes]:
    try:
        return single_samples(base64.b64decode(data))
    except binascii.Error:
        return [b""]


def _device_time(sample: bytes) -> int | None:
    try:
        body = msgspec.json.decode(sample)
    except msgspec.DecodeError:
        return None
    timestamp = body.get("timestamp") if isinstance(body, dict) else None
    return parse_rfc3339_ms(timestamp) if isinstance(timestamp, str) else None
