"""What one processed batch adds to the consumer's metrics, and the one log line of a record whose
processing raised.

A batch that came back with failures counts its records from the lowest failed sequence number on as
``retried`` and nothing else (nothing was applied; they run again). Otherwise: processed, duplicate and
rejected records, dead letters by reason, alerts by type, and the latencies from the device's event time
and from Kinesis arrival to now (end to end, and to detection for alerts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service.core import KinesisRecord, Reject, RejectReason
from service.core.telemetry import parse_rfc3339_ms
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.resident import StepOutcome

log = logging.getLogger(__name__)


def account_step(
    metrics: ConsumerMetrics, step: StepOutcome, records: list[KinesisRecord], now_ms: Callable[[], int]
) -> None:
    """Count ``step``, the outcome of running ``records``, into ``metrics`` (see the module contract)."""
    m, result = metrics, step.result
    if step.failures:  # nothing was applied: these records run again, from the lowest failure on
        lowest = min(int(s) for s in step.failures)
        m.records.labels("retried").inc(sum(1 for r in records if r.seq_int >= lowest))
        return
    now = now_ms()
    arrivals: dict[tuple[str, int], int] = {}
    for record in result.processed:
        m.latency.observe(max(now - record.event_ms, 0) / 1000)
        arrivals[(record.device_id, record.event_ms)] = record.arrival_ms
    m.records.labels("processed").inc(len(result.processed))
    m.records.labels("duplicate").inc(result.duplicates + result.redelivered)
    m.late_samples.inc(result.late)
    m.records.labels("rejected").inc(len(result.rejects))
    for reject in result.rejects:
        m.dead_letters.labels(str(reject.reason)).inc()
        if reject.reason is RejectReason.PROCESSING_ERROR:
            _log_processing_error(reject)
    for alert in result.alerts:
        m.alerts.labels(str(alert.type)).inc()
        detected = parse_rfc3339_ms(alert.detectedAt)
        if detected is None:
            continue
        m.detection_latency.labels("device").observe(max(now - detected, 0) / 1000)
        arrival = arrivals.get((alert.deviceId, detected))
        if arrival is not None:
            m.detection_latency.labels("arrival").observe(max(now - arrival, 0) / 1000)


def _log_processing_error(reject: Reject) -> None:
    """A record whose processing raised is a bug to look at, not a bad device: one line with where it
    sits and what was raised, never its payload (it is in the dead-letter store)."""
    log.error(
        "processing_error",
        extra={
            "shard_id": reject.shard_id,
            "sequence_number": reject.sequence_number,
            "sub_sequence_number": reject.sub_sequence_number,
            "detail": reject.detail,
        },
    )
