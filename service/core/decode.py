"""Kinesis records → validated samples and rejects. Never raises on any payload: a record whose
decoding raises anyway is refused with ``processing_error`` (a safety net the property tests keep
unused), so no record can block its shard."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import msgspec

from service.core.kpl import KPL_MAGIC, AggregateError, deaggregate
from service.core.records import EVENT_MS_MAX, EVENT_MS_MIN, KinesisRecord, Reject, RejectReason
from service.core.telemetry import (
    TELEMETRY_DECODER,
    Telemetry,
    TimestampParser,
    Violation,
    explain,
    utf8_violation,
)


class Sample(msgspec.Struct, frozen=True, gc=False):
    """A valid telemetry sample and the record that carried it (``sub`` is its KPL sub-sequence
    number, None for a plain record)."""

    telemetry: Telemetry
    raw: bytes
    event_ms: int
    record: KinesisRecord
    sub: int | None


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
    event_ms_of = TimestampParser().event_ms
    decode = TELEMETRY_DECODER.decode
    for record, data, sub in _payloads(records, refused):
        try:
            sample = _sample(record, data, sub, decode, event_ms_of)
        except Exception as exc:
            refused.append(_reject(record, sub, processing_error(exc), data))
            continue
        if isinstance(sample, Violation):
            refused.append(_reject(record, sub, sample, data))
            continue
        if sample.telemetry.deviceId not in first:
            first[sample.telemetry.deviceId] = record.sequence_number
        samples.append(sample)
    return DecodedBatch(samples, refused, first)


def _sample(
    record: KinesisRecord,
    data: bytes,
    sub: int | None,
    decode: Callable[[bytes], Telemetry],
    event_ms_of: Callable[[str], int | None],
) -> Sample | Violation:
    try:
        telemetry = decode(data)
    except (msgspec.MsgspecError, ValueError):  # ValueError: msgspec's UnicodeDecodeError
        return explain(data)
    not_utf8 = utf8_violation(data)  # in a field the decoder skipped
    if not_utf8 is not None:
        return not_utf8
    event_ms = event_ms_of(telemetry.timestamp)
    if event_ms is None:
        return _bad_timestamp(telemetry.deviceId)
    if not EVENT_MS_MIN <= event_ms <= EVENT_MS_MAX:
        return Violation(
            RejectReason.TIMESTAMP_OUT_OF_RANGE,
            "timestamp",
            "timestamp must fall between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in UTC",
            telemetry.deviceId,
        )
    return Sample(telemetry, data, event_ms, record, sub)


def processing_error(exc: Exception) -> Violation:
    """The reason for a record whose processing raised: the exception's type and (cut) message."""
    return Violation(RejectReason.PROCESSING_ERROR, None, f"{type(exc).__name__}: {exc}"[:200])


def _payloads(
    records: Iterable[KinesisRecord], refused: list[Reject]
) -> Iterator[tuple[KinesisRecord, bytes, int | None]]:
    """Each record's payload, or each user record's payload (with its sub-sequence number) for a
    KPL aggregate; a malformed aggregate is refused whole."""
    for record in records:
        data = record.data
        if data[:4] != KPL_MAGIC:
            yield record, data, None
            continue
        try:
            users = deaggregate(data)
        except AggregateError as exc:
            refused.append(_reject(record, None, Violation(RejectReason.INVALID_AGGREGATE, None, str(exc))))
            continue
        except Exception as exc:
            refused.append(_reject(record, None, processing_error(exc)))
            continue
        for sub, user in enumerate(users):
            yield record, user.data, sub


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


def record_from_api(record: Mapping[str, Any], shard_id: str) -> KinesisRecord:
    """A ``Record`` of the Kinesis API (GetRecords, a SubscribeToShardEvent) as the core's record."""
    return KinesisRecord(
        record["Data"],
        shard_id,
        record["SequenceNumber"],
        int(record["ApproximateArrivalTimestamp"].timestamp() * 1000),
        record.get("PartitionKey", ""),
    )


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
