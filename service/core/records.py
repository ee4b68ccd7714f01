"""Values that cross the core's boundary: Kinesis records in; processed records and rejects out."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

import msgspec

from service.core.anomalies import AnomalyType, Status

SEQUENCE_DIGITS = 40  # a 128-bit number has at most 39 decimal digits
# The event times the core represents, in epoch ms: 1970-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z.
# Every one of them formats back (``iso_ms``); negative times would also collide with the state's NONE.
EVENT_MS_MIN = 0
EVENT_MS_MAX = 253_402_300_799_999


def padded_sequence(sequence_number: str) -> str:
    """A Kinesis sequence number (decimal, ≤ 128 bits) as a string that sorts like the integer: the
    device table's ``lastSeq`` and the archive's keys."""
    return sequence_number.zfill(SEQUENCE_DIGITS)


class KinesisRecord(msgspec.Struct, frozen=True, gc=False):
    """One record as Kinesis delivered it: payload bytes plus where it sits in its shard.

    ``sequence_number`` is a decimal string of up to 128 bits; compare it with ``seq_int``.
    ``arrival_ms`` is the stream's approximate arrival time in epoch milliseconds.
    """

    data: bytes
    shard_id: str
    sequence_number: str
    arrival_ms: int
    partition_key: str = ""

    @property
    def seq_int(self) -> int:
        return int(self.sequence_number)


class RejectReason(StrEnum):
    """Machine-readable reasons a record goes to the dead-letter store instead of the archive."""

    INVALID_BASE64 = "invalid_base64"
    INVALID_AGGREGATE = "invalid_aggregate"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    INVALID_DEVICE_ID = "invalid_device_id"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"  # before 1970 or after 9999 in UTC
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"  # ahead of its Kinesis arrival by more than the skew
    TIMESTAMP_TOO_OLD = "timestamp_too_old"  # behind its Kinesis arrival by more than the horizon
    PROCESSING_ERROR = "processing_error"  # processing it raised: a safety net, never a habit
    DEVICE_ID_MISMATCH = "device_id_mismatch"  # a deviceId differs from its topic's or its batch's
    TOO_MANY_SAMPLES = "too_many_samples"  # a batch above the configured count
    MESSAGE_TOO_LARGE = "message_too_large"  # a message above the configured size


class Reject(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A poison record with the reason it was refused. Never retried; it must not block its shard."""

    data: bytes
    shard_id: str
    sequence_number: str
    arrival_ms: int
    reason: RejectReason
    field: str | None
    detail: str
    sub_sequence_number: int | None = None
    device_id: str | None = None
    sample_index: int | None = None  # a batched sample's index in its message's ``samples``

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "reason": self.reason.value,
            "field": self.field,
            "detail": self.detail,
            "shardId": self.shard_id,
            "sequenceNumber": self.sequence_number,
            "arrivalTime": self.arrival_ms,
            "data": base64.b64encode(self.data).decode("ascii"),
        }
        if self.sub_sequence_number is not None:
            body["subSequenceNumber"] = self.sub_sequence_number
        if self.device_id is not None:
            body["deviceId"] = self.device_id
        if self.sample_index is not None:
            body["sampleIndex"] = self.sample_index
        return body

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.to_dict())


class ProcessedRecord(msgspec.Struct, frozen=True, gc=False):
    """A valid sample, enriched. ``raw`` is the input JSON object exactly as received, so unknown
    fields pass through; ``to_json`` appends the enrichment fields to it. ``processed_at`` is
    ``processed_at_ms`` in RFC 3339 (formatted once per batch)."""

    raw: bytes
    device_id: str
    event_ms: int
    heart_rate: int
    steps: int
    spo2: int | None
    skin_temp: float | None
    battery: int | None
    device_seq: int | None
    processed_at_ms: int
    processed_at: str
    status: Status
    anomalies: tuple[AnomalyType, ...]
    shard_id: str
    sequence_number: str
    sub_sequence_number: int | None
    out_of_order: bool
    arrival_ms: int = 0  # the Kinesis record's approximate arrival time (not part of the archive line)

    @property
    def latency_ms(self) -> int:
        return self.processed_at_ms - self.event_ms

    def enrichment(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "processedAt": self.processed_at,
            "status": self.status.value,
            "anomalies": [a.value for a in self.anomalies],
            "shardId": self.shard_id,
            "sequenceNumber": self.sequence_number,
            "latencyMs": self.latency_ms,
        }
        if self.sub_sequence_number is not None:
            fields["subSequenceNumber"] = self.sub_sequence_number
        if self.out_of_order:
            fields["outOfOrder"] = True
        return fields

    def to_json(self) -> bytes:
        """The archive line: input object + enrichment. Enrichment keys sent by a device are replaced."""
        body = self.raw
        if body[-1:] == b"}" and _ENRICHMENT_KEY.search(body) is None:
            return b"%b,%b}" % (body[:-1], self._enrichment_members())
        merged: dict[str, object] = msgspec.json.decode(body)
        merged.update(self.enrichment())
        return msgspec.json.encode(merged)

    def _enrichment_members(self) -> bytes:
        # Hand-built for speed; the property tests check it against ``enrichment()``.
        members = (
            f'"processedAt":"{self.processed_at}","status":"{self.status}",'
            f'"anomalies":{_anomaly_list(self.anomalies)},"shardId":{_json_shard(self.shard_id)},'
            f'"sequenceNumber":{_json_sequence(self.sequence_number)},'
            f'"latencyMs":{self.processed_at_ms - self.event_ms}'
        )
        if self.sub_sequence_number is not None:
            members += f',"subSequenceNumber":{self.sub_sequence_number}'
        if self.out_of_order:
            members += ',"outOfOrder":true'
        return members.encode()


# A false positive only sends a line down the exact (slower) merge path, never to a wrong line.
_ENRICHMENT_KEY = re.compile(
    rb'"(?:processedAt|status|anomalies|shardId|sequenceNumber|subSequenceNumber|latencyMs|outOfOrder)"'
)


@lru_cache(maxsize=64)
def _anomaly_list(anomalies: tuple[AnomalyType, ...]) -> str:
    return msgspec.json.encode([a.value for a in anomalies]).decode()


@lru_cache(maxsize=256)
def _json_shard(shard_id: str) -> str:
    return msgspec.json.encode(shard_id).decode()


def _json_sequence(sequence_number: str) -> str:
    # Kinesis sequence numbers are digits; anything else is escaped properly.
    if sequence_number.isdigit() and sequence_number.isascii():
        return f'"{sequence_number}"'
    return msgspec.json.encode(sequence_number).decode()


def latest_in_order(records: Iterable[ProcessedRecord]) -> dict[str, ProcessedRecord]:
    """Each device's newest in-order record (late samples never become a device's latest state)."""
    latest: dict[str, ProcessedRecord] = {}
    for record in records:
        if not record.out_of_order:
            latest[record.device_id] = record
    return latest


def iso_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with millisecond precision, e.g. ``2026-11-28T02:31:24.123Z``; defined for every
    ``EVENT_MS_MIN <= epoch_ms <= EVENT_MS_MAX`` (the decoder rejects any other event time)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
