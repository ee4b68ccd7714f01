"""Plain builders for unit tests of the pure core: telemetry, records and one-call batch runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator

from service.core import (
    DEFAULT_CONFIG,
    Alert,
    BatchResult,
    DetectionConfig,
    Detector,
    DeviceState,
    KinesisRecord,
    decode_records,
    iso_ms,
    process_batch,
)
from service.core.records import EVENT_MS_MAX
from service.core.telemetry import parse_rfc3339_ms

T0 = 1_795_831_200_000  # 2026-11-28T02:00:00Z
SHARD = "shardId-000000000000"
SEQ0 = 49590338271490256608559692538361571095921575989136588898


def telemetry(**overrides: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "deviceId": "dev-1",
        "timestamp": iso_ms(T0),
        "heartRate": 70,
        "steps": 0,
        "spo2": 97,
        "skinTemp": 33.5,
        "battery": 80,
    }
    sample.update(overrides)
    return {k: v for k, v in sample.items() if v is not _OMIT}


_OMIT = object()
_WOBBLE = (0, 1, -1, 2, -2, 1, 0, -1)
OMIT: Any = _OMIT


def record(
    payload: bytes | Mapping[str, Any], seq: int, shard: str = SHARD, arrival_ms: int | None = None
) -> KinesisRecord:
    """A record that arrived at ``arrival_ms``: by default when its sample was taken (a device on time),
    or at T0 when the payload has no valid timestamp."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if arrival_ms is None:
        stamp = _timestamp_of(payload)
        taken = _event_ms(stamp)
        arrival_ms = taken if taken is not None and 0 <= taken <= EVENT_MS_MAX else T0
    return KinesisRecord(data, shard, str(seq), arrival_ms)


def _event_ms(stamp: object) -> int | None:
    try:
        return parse_rfc3339_ms(stamp) if isinstance(stamp, str) else None
    except ValueError:  # a lone surrogate the test put there on purpose
        return None


def _timestamp_of(payload: bytes | Mapping[str, Any]) -> object:
    if isinstance(payload, Mapping):
        return payload.get("timestamp")
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    return decoded.get("timestamp") if isinstance(decoded, dict) else None


def records(payloads: Iterable[bytes | Mapping[str, Any]], first_seq: int = SEQ0) -> list[KinesisRecord]:
    return [record(p, first_seq + i) for i, p in enumerate(payloads)]


def run(
    batch: Iterable[KinesisRecord],
    states: Mapping[str, DeviceState] | None = None,
    config: DetectionConfig = DEFAULT_CONFIG,
    now_ms: int = T0 + 3_600_000,
    unavailable: Iterable[str] = (),
) -> BatchResult:
    return process_batch(
        decode_records(batch), states or {}, Detector(config), now_ms, frozenset(unavailable)
    )


def kpl_aggregate(payloads: list[tuple[str, bytes]]) -> bytes:
    """A KPL-aggregated record of (partition key, data) user records, built by the KPL's own library."""
    aggregator = RecordAggregator()
    for key, data in payloads:
        assert aggregator.add_user_record(key, data) is None
    _, _, blob = aggregator.clear_and_get().get_contents()
    return bytes(blob)


@dataclass
class Device:
    """A device emitting one sample every ``interval_ms``; ``feed`` runs its samples through the core
    batch by batch, carrying state as a deployment would."""

    device_id: str = "dev-1"
    interval_ms: int = 5_000
    config: DetectionConfig = DEFAULT_CONFIG
    t: int = T0
    seq: int = 0
    kinesis_seq: int = SEQ0
    states: dict[str, DeviceState] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    def samples(self, seconds: int, jitter: bool = True, **values: Any) -> list[dict[str, Any]]:
        """Samples every ``interval_ms``; a non-zero heart rate wobbles by a few bpm around the given
        value (as real ones do) unless ``jitter`` is False, so only a test that means to hold a
        reading flat does."""
        out = []
        for _ in range(seconds * 1000 // self.interval_ms):
            sample = dict(values)
            if jitter and sample.get("heartRate"):
                sample["heartRate"] += _WOBBLE[self.seq % len(_WOBBLE)]
            out.append(telemetry(deviceId=self.device_id, timestamp=iso_ms(self.t), seq=self.seq, **sample))
            self.t += self.interval_ms
            self.seq += 1
        return out

    def feed(self, payloads: list[dict[str, Any]]) -> BatchResult:
        batch = records(payloads, self.kinesis_seq)
        self.kinesis_seq += len(payloads)
        result = run(batch, self.states, self.config)
        self.states.update(result.states)
        self.alerts.extend(result.alerts)
        return result

    def emit(self, seconds: int, jitter: bool = True, **values: Any) -> BatchResult:
        return self.feed(self.samples(seconds, jitter, **values))

    def types(self) -> list[str]:
        return [a.type.value for a in self.alerts]
