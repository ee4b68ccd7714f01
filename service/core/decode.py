"""Kinesis records → validated samples and rejects. Never raises on any payload."""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from service.core.kpl import AggregateError, deaggregate, is_aggregated
from service.core.records import KinesisRecord, Reject, RejectReason
from service.core.telemetry import (
    TELEMETRY_DECODER,
    Telemetry,
    TimestampParser,
    Violation,
    explain,
)


class Sample(NamedTuple):
    """A valid telemetry sample and its place in the stream."""

    telemetry: Telemetry
    raw: bytes
    event_ms: int
    shard_id: str
    sequence_number: str
    seq_int: int
    sub_sequence_number: int | None
    arrival_ms: int


class DecodedBatch(NamedTuple):
    samples: list[Sample]
    rejects: list[Reject]
    first_sequence: dict[str, str]  # deviceId → sequence number of its first sample in the batch

    @property
    def device_ids(self) -> list[str]:
        return list(self.first_sequence)


def decode_records(records: Iterable[KinesisRecord], rejects: Iterable[Reject] = ()) -> DecodedBatch:
    """Decode a batch in order. ``rejects`` lets a caller carry in records it could not even frame
    (e.g. bad base64 in a Lambda event); they are returned with the others."""
    samples: list[Sample] = []
    refused: list[Reject] = list(rejects)
    first: dict[str, str] = {}
    timestamps = TimestampParser()
    for record in records:
        data = record.data
        if data[:4] == b"\xf3\x89\x9a\xc2" and is_aggregated(data):
            try:
                users = deaggregate(data)
            except AggregateError as exc:
                refused.append(
                    _reject(record, None, Violation(RejectReason.INVALID_AGGREGATE, None, str(exc)))
                )
                continue
            for sub, user in enumerate(users):
                _decode_one(record, user.data, sub, timestamps, samples, refused, first)
        else:
            _decode_one(record, data, None, timestamps, samples, refused, first)
    return DecodedBatch(samples, refused, first)


def _decode_one(
    record: KinesisRecord,
    data: bytes,
    sub: int | None,
    timestamps: TimestampParser,
    samples: list[Sample],
    refused: list[Reject],
    first: dict[str, str],
) -> None:
    try:
        telemetry = TELEMETRY_DECODER.decode(data)
    except (msgspec.MsgspecError, ValueError):  # ValueError: msgspec's UnicodeDecodeError on bad UTF-8
        refused.append(_reject(record, sub, explain(data), data))
        return
    device_id = telemetry.deviceId
    event_ms = timestamps.event_ms(telemetry.timestamp)
    if event_ms is None:
        refused.append(_reject(record, sub, _bad_timestamp(device_id), data))
        return
    if device_id not in first:
        first[device_id] = record.sequence_number
    samples.append(
        Sample(
            telemetry,
            data,
            event_ms,
            record.shard_id,
            record.sequence_number,
            int(record.sequence_number),
            sub,
            record.arrival_ms,
        )
    )


def _bad_device_id() -> Violation:
    return Violation(
        RejectReason.INVALID_DEVICE_ID, "deviceId", "deviceId must be 1-128 chars of [A-Za-z0-9_.:-]"
    )


def _bad_timestamp(device_id: str) -> Violation:
    return Violation(
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
        "timestamp must be RFC 3339 with an offset or Z",
        device_id,
    )


def _reject(record: KinesisRecord, sub: int | None, why: Violation, data: bytes | None = None) -> Reject:
    return Reject(
        data=record.data if data is None else data,
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        sub_sequence_number=sub,
        arrival_ms=record.arrival_ms,
        reason=why.reason,
        field=why.field,
        detail=why.detail,
        device_id=why.device_id,
    )


class LambdaBatch(NamedTuple):
    records: list[KinesisRecord]
    rejects: list[Reject]


def records_from_lambda_event(event: Mapping[str, Any]) -> LambdaBatch:
    """The Kinesis records of a Lambda event (``Records[].kinesis``), payloads base64-decoded."""
    records: list[KinesisRecord] = []
    rejects: list[Reject] = []
    for entry in event.get("Records", ()):
        kinesis = entry["kinesis"]
        shard_id = entry.get("eventID", "").partition(":")[0]
        sequence_number = kinesis["sequenceNumber"]
        arrival_ms = int(float(kinesis.get("approximateArrivalTimestamp", 0)) * 1000)
        partition_key = kinesis.get("partitionKey", "")
        encoded = kinesis.get("data", "")
        try:
            data = binascii.a2b_base64(encoded, strict_mode=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raw = encoded.encode("utf-8", errors="replace") if isinstance(encoded, str) else b""
            framed = KinesisRecord(raw, shard_id, sequence_number, arrival_ms, partition_key)
            why = Violation(RejectReason.INVALID_BASE64, None, f"kinesis.data is not base64: {exc}")
            rejects.append(_reject(framed, None, why))
            continue
        records.append(KinesisRecord(data, shard_id, sequence_number, arrival_ms, partition_key))
    return LambdaBatch(records, rejects)
