"""Lambda mode's metrics: one CloudWatch Embedded Metric Format (EMF) line per invocation.

The quantities are those ``/metrics`` gives in consumer mode (``consumer.metrics``,
``consumer.step_metrics``), named in Powertools' style. The line follows Powertools' Metrics
conventions: namespace from the settings (``VitalStream`` by default), one dimension set
``[service, mode]`` — both bounded (``mode``: ``batch``, ``window`` or ``archive``); never a shard, a
device or a request id — and the metric values as top-level members. What a Prometheus label would split
(reject reason, alert type, AWS service and operation, table, sink) is part of the metric's name
(``Rejects_invalid_json``, ``AwsRequests_dynamodb_UpdateItem``): a dimension takes one value per
document, so a dimension per reason would need a line per reason. Every such name comes from a
bounded set (the core's enums, the operations the runtime calls, the tables it is configured
with), and a keyed metric is written only when it is above 0. High-cardinality context (request id,
shard, sequence range) rides along as members no directive references (Powertools' metadata):
searchable in Logs Insights, never a metric.

Per-record latencies are arrays of values, in milliseconds; a metric holds at most 100 values
(the EMF limit), so a longer series is reduced to 100 of its order statistics, the least and the
greatest included (``bounded``): CloudWatch's percentiles over them approximate the batch's, but
their sample count is not a record count (``Samples_processed`` is). A document holds at most 100
metrics; past that the metrics go on as many further lines, each complete — at this metric set a
pathological case, not a habit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.core.telemetry import parse_rfc3339_ms
from service.runtime.accounting import Kind
from service.runtime.invocation import Invocation, span_fields

MAX_METRICS = 100  # MetricDefinition objects per directive
MAX_VALUES = 100  # values of one metric's array
DIMENSIONS = ("service", "mode")
OUTCOMES = ("processed", "rejected", "duplicate", "retried")  # consumer mode's outcomes, the same words

# Families: metrics whose name carries a key after ``_`` (a reason, a type, a table, ...).
REJECTS, ALERTS, AWS_REQUESTS, SINK_ERRORS = "Rejects", "Alerts", "AwsRequests", "SinkErrors"
ITEM_WRITES, ITEM_READS = "ItemWrites", "ItemReads"
WRITE_UNITS, READ_UNITS = "WriteCapacityUnits", "ReadCapacityUnits"
FAMILIES = (REJECTS, ALERTS, AWS_REQUESTS, SINK_ERRORS, ITEM_WRITES, ITEM_READS, WRITE_UNITS, READ_UNITS)


class Unit(StrEnum):
    COUNT = "Count"
    MILLISECONDS = "Milliseconds"
    BYTES = "Bytes"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: Unit
    value: float | tuple[float, ...]


def bounded(values: Sequence[float], limit: int = MAX_VALUES) -> tuple[float, ...]:
    """``values`` when there are at most ``limit``; otherwise ``limit`` order statistics spread evenly
    from the least to the greatest."""
    if len(values) <= limit:
        return tuple(values)
    ordered = sorted(values)
    last = len(ordered) - 1
    return tuple(ordered[round(i * last / (limit - 1))] for i in range(limit))


def keyed(family: str, key: str) -> str:
    return f"{family}_{key}"


def invocation_metrics(invocation: Invocation, now_ms: int) -> list[Metric]:
    """Every metric of one invocation (see the module); zero-valued keyed metrics left out."""
    count = Unit.COUNT
    metrics = [
        Metric("Invocations", count, 1),
        Metric("InvocationErrors", count, int(invocation.raised)),
        Metric("InvocationDuration", Unit.MILLISECONDS, invocation.duration_ms),
        Metric("KinesisRecords", count, invocation.span.records),
        Metric("BatchItemFailures", count, invocation.failures),
    ]
    metrics += _sample_metrics(invocation, now_ms)
    metrics.append(Metric(SINK_ERRORS, count, len(invocation.errors)))
    by_sink: dict[str, int] = {}
    for error in invocation.errors:
        by_sink[error.sink.value] = by_sink.get(error.sink.value, 0) + 1
    metrics += [Metric(keyed(SINK_ERRORS, sink), count, n) for sink, n in sorted(by_sink.items())]
    metrics += _request_metrics(invocation)
    if invocation.window is not None:
        window = invocation.window
        metrics += [
            Metric("WindowStateSize", Unit.BYTES, window.state_bytes),
            Metric("WindowDevicesLoaded", count, window.devices_loaded),
            Metric("WindowDevicesWritten", count, window.devices_written),
            Metric("WindowDevicesQueued", count, window.devices_queued),
            Metric("WindowDevicesAdopted", count, window.devices_adopted),
            Metric("WindowDevicesHandedOff", count, window.devices_handed_off),
            Metric("WindowsClosed", count, int(window.closed)),
        ]
    return metrics


def _sample_metrics(invocation: Invocation, now_ms: int) -> list[Metric]:
    """Samples by outcome, late samples, rejects by reason, alerts by type, and the latencies: as
    ``consumer.step_metrics`` counts a batch, with the records of devices whose effects did not land
    counted ``retried`` (Lambda delivers them again) and nothing else of theirs."""
    result, count = invocation.result, Unit.COUNT
    if result is None:
        return [Metric(keyed("Samples", outcome), count, 0) for outcome in OUTCOMES]
    failed = invocation.failed_devices
    landed = [p for p in result.processed if p.device_id not in failed]
    alerts = [a for a in result.alerts if a.deviceId not in failed]
    metrics = [
        Metric("Samples_processed", count, len(landed)),
        Metric("Samples_rejected", count, len(result.rejects)),
        Metric("Samples_duplicate", count, result.duplicates + result.redelivered),
        Metric("Samples_retried", count, len(result.processed) - len(landed)),
        Metric("LateSamples", count, result.late),
        Metric(ALERTS, count, len(alerts)),
    ]
    metrics += _counted(REJECTS, (str(r.reason) for r in result.rejects))
    metrics += _counted(ALERTS, (str(a.type) for a in alerts))
    if landed:
        metrics.append(
            Metric("SinkLatency", Unit.MILLISECONDS, bounded([max(now_ms - p.event_ms, 0) for p in landed]))
        )
    arrivals = {(p.device_id, p.event_ms): p.arrival_ms for p in landed}
    from_device: list[float] = []
    from_arrival: list[float] = []
    for alert in alerts:
        detected = parse_rfc3339_ms(alert.detectedAt)
        if detected is None:
            continue
        from_device.append(max(now_ms - detected, 0))
        arrival = arrivals.get((alert.deviceId, detected))
        if arrival is not None:
            from_arrival.append(max(now_ms - arrival, 0))
    if from_device:
        metrics.append(Metric("DetectionLatency", Unit.MILLISECONDS, bounded(from_device)))
    if from_arrival:
        metrics.append(Metric("DetectionLatencyFromArrival", Unit.MILLISECONDS, bounded(from_arrival)))
    return metrics


def _request_metrics(invocation: Invocation) -> list[Metric]:
    """The invocation's AWS requests by service and operation, DynamoDB items and capacity by table."""
    counts, count = invocation.requests, Unit.COUNT
    metrics = [Metric(AWS_REQUESTS, count, counts.calls())]
    metrics += [
        Metric(keyed(AWS_REQUESTS, f"{service}_{operation}"), count, n)
        for (service, operation), n in sorted(counts.requests.items())
        if n
    ]
    for family, items in ((ITEM_WRITES, counts.item_writes), (ITEM_READS, counts.item_reads)):
        metrics += [Metric(keyed(family, table), count, n) for table, n in sorted(items.items()) if n]
    for family, kind in ((WRITE_UNITS, Kind.WRITE), (READ_UNITS, Kind.READ)):
        tables = sorted({table for (table, k, _), n in counts.capacity_units.items() if k == kind and n})
        metrics += [Metric(keyed(family, t), count, counts.units(kind, table=t)) for t in tables]
    return metrics


def _counted(family: str, keys: Iterable[str]) -> list[Metric]:
    tally: dict[str, int] = {}
    for key in keys:
        tally[key] = tally.get(key, 0) + 1
    return [Metric(keyed(family, key), Unit.COUNT, n) for key, n in sorted(tally.items())]


def documents(
    metrics: Sequence[Metric],
    *,
    namespace: str,
    dimensions: Mapping[str, str],
    timestamp_ms: int,
    metadata: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """EMF documents for ``metrics``: one, unless there are more than ``MAX_METRICS``. ``dimensions``
    form the one dimension set; ``metadata`` members no directive references."""
    documents = []
    for start in range(0, max(len(metrics), 1), MAX_METRICS):
        chunk = metrics[start : start + MAX_METRICS]
        directive = {
            "Namespace": namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [{"Name": m.name, "Unit": m.unit.value} for m in chunk],
        }
        document: dict[str, Any] = {"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]}}
        document.update(metadata or {})
        document.update(dimensions)
        document.update({m.name: list(m.value) if isinstance(m.value, tuple) else m.value for m in chunk})
        documents.append(document)
    return documents


def invocation_lines(
    invocation: Invocation, *, namespace: str, service: str, context: Mapping[str, Any], now_ms: int
) -> list[str]:
    """The invocation's EMF line (more only past ``MAX_METRICS``), ready for stdout."""
    metadata = {**context, **span_fields(invocation)}
    dimensions = {"service": service, "mode": invocation.mode.value}
    emitted = documents(
        invocation_metrics(invocation, now_ms),
        namespace=namespace,
        dimensions=dimensions,
        timestamp_ms=now_ms,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )
    return [json.dumps(document, separators=(",", ":")) for document in emitted]
