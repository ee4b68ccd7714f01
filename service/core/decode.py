"""Kinesis records → validated samples and rejects. Never raises on any payload: a record whose
decoding raises anyway is refused with ``processing_error`` (a safety net the property tests keep
unused), so no record can block its shard.

A record holds one message, or several in a KPL aggregate; a message holds one sample, or several in
a batch (``service.core.envelope``). Every sample is a record of its own from here on, identified by
shard, sequence number and ``sub``; a bad sample is rejected alone, a broken envelope or aggregate
whole."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from service.core.envelope import DEFAULT_LIMITS, Batch, MessageLimits, open_batch, too_large
from service.core.kpl import KPL_MAGIC, AggregateError, deaggregate
from service.core.records import EVENT_MS_MAX, EVENT_MS_MIN, KinesisRecord, Reject, RejectReason
from service.core.telemetry import (
    BATCHED_READING_DECODER,
    TELEMETRY_DECODER,
    BatchedReading,
    Reading,
    TimestampParser,
    Violation,
    explain,
    explain_sample,
    utf8_violation,
)


class Sample(msgspec.Struct, frozen=True, gc=False):
    """A valid sample and the record that carried it. ``sub`` is its position within the record:
    None for a record that is one sample, else its index among the record's samples (a KPL
    aggregate's user records counted one after another); ``index`` is a batched sample's index in its
    own message's ``samples``. ``raw`` is the start of its archive line: the sample as sent, with the
    batch's ``deviceId`` (and other envelope members) put first."""

    telemetry: Reading
    raw: bytes
    event_ms: int
    record: KinesisRecord
    sub: int | None
    device_id: str
    index: int | None = None


class DecodedBatch(NamedTuple):
    samples: list[Sample]
    rejects: list[Reject]
    first_sequence: dict[str, str]  # deviceId → sequence number of its first sample in the batch

    @property
    def device_ids(self) -> list[str]:
        return list(self.first_sequence)


def decode_records(
    records: Iterable[KinesisRecord], rejects: Iterable[Reject] = (), limits: MessageLimits = DEFAULT_LIMITS
) -> DecodedBatch:
    """Decode a batch in order, each batched message into its samples. ``rejects`` lets a caller
    carry in records it could not even frame (e.g. bad base64 in a Lambda event); they are returned
    with the others."""
    decoding = _Decoding(limits, list(rejects))
    for record in records:
        decoding.add(record)
    return DecodedBatch(decoding.samples, decoding.refused, decoding.first)


class _Decoding:
    """One batch being decoded: what came out so far."""

    __slots__ = ("event_ms_of", "first", "limits", "refused", "samples")

    def __init__(self, limits: MessageLimits, refused: list[Reject]) -> None:
        self.limits, self.refused = limits, refused
        self.samples: list[Sample] = []
        self.first: dict[str, str] = {}
        self.event_ms_of = TimestampParser().event_ms

    def add(self, record: KinesisRecord) -> None:
        """A record's messages: the record itself, or each user record of a KPL aggregate (a
        malformed aggregate is refused whole)."""
        data = record.data
        if data[:4] != KPL_MAGIC:
            self._message(record, data, None)
            return
        try:
            users = deaggregate(data)
        except AggregateError as exc:
            why = Violation(RejectReason.INVALID_AGGREGATE, None, str(exc))
            self.refused.append(_reject(record, None, why))
            return
        except Exception as exc:
            self.refused.append(_reject(record, None, processing_error(exc)))
            return
        sub = 0
        for user in users:
            sub += self._message(record, user.data, sub)

    def _message(self, record: KinesisRecord, data: bytes, sub: int | None) -> int:
        """Decode one message found at ``sub``; the number of positions (samples) it takes."""
        try:
            violation = too_large(data, self.limits)
            if violation is None:
                batch = open_batch(data, self.limits)
                if batch is None:
                    self._single(record, data, sub)
                    return 1
                if isinstance(batch, Batch):
                    return self._batch(record, batch, sub or 0)
                violation = batch
        except Exception as exc:
            violation = processing_error(exc)
        self.refused.append(_reject(record, sub, violation, data))
        return 1

    def _single(self, record: KinesisRecord, data: bytes, sub: int | None) -> None:
        try:
            sample = _single_sample(record, data, sub, self.event_ms_of)
        except Exception as exc:
            sample = processing_error(exc)
        if isinstance(sample, Violation):
            self.refused.append(_reject(record, sub, sample, data))
        else:
            self._keep(sample)

    def _batch(self, record: KinesisRecord, batch: Batch, base: int) -> int:
        if batch.readings is not None and self._valid_batch(record, batch, batch.readings, base):
            return len(batch.readings)
        device_id, event_ms_of = batch.device_id, self.event_ms_of
        for index, raw in enumerate(batch.samples):
            data = bytes(raw)
            try:
                sample = _batched_sample(record, data, base + index, index, batch, event_ms_of)
            except Exception as exc:
                sample = processing_error(exc, device_id)
            if isinstance(sample, Violation):
                self.refused.append(_reject(record, base + index, sample, data, index))
            else:
                self._keep(sample)
        return len(batch.samples)

    def _valid_batch(
        self, record: KinesisRecord, batch: Batch, readings: list[BatchedReading], base: int
    ) -> bool:
        """The fast path of a batch whose samples all decoded: keep them all, unless one carries
        another device's id or an event time the core cannot represent (then False: nothing kept,
        each sample goes its own way)."""
        device_id, prefix, event_ms_of = batch.device_id, batch.prefix, self.event_ms_of
        kept: list[Sample] = []
        for index, (reading, raw) in enumerate(zip(readings, batch.samples, strict=True)):
            event_ms = event_ms_of(reading.timestamp)
            if event_ms is None or not EVENT_MS_MIN <= event_ms <= EVENT_MS_MAX:
                return False
            if reading.deviceId is None:
                line = prefix + bytes(raw)[1:]
            elif reading.deviceId == device_id:
                line = bytes(raw)
            else:
                return False
            kept.append(Sample(reading, line, event_ms, record, base + index, device_id, index))
        if device_id not in self.first:
            self.first[device_id] = record.sequence_number
        self.samples += kept
        return True

    def _keep(self, sample: Sample) -> None:
        if sample.device_id not in self.first:
            self.first[sample.device_id] = sample.record.sequence_number
        self.samples.append(sample)


def _single_sample(
    record: KinesisRecord, data: bytes, sub: int | None, event_ms_of: Callable[[str], int | None]
) -> Sample | Violation:
    try:
        telemetry = _decode_telemetry(data)
    except (msgspec.MsgspecError, ValueError):  # ValueError: msgspec's UnicodeDecodeError
        return explain(data)
    device_id = telemetry.deviceId
    event_ms = _event_time(data, telemetry.timestamp, device_id, event_ms_of)
    if isinstance(event_ms, Violation):
        return event_ms
    return Sample(telemetry, data, event_ms, record, sub, device_id)


def _batched_sample(
    record: KinesisRecord,
    data: bytes,
    sub: int,
    index: int,
    batch: Batch,
    event_ms_of: Callable[[str], int | None],
) -> Sample | Violation:
    device_id = batch.device_id
    try:
        reading = _decode_reading(data)
    except (msgspec.MsgspecError, ValueError):
        return explain_sample(data, device_id)
    own_id = reading.deviceId
    if own_id is not None and own_id != device_id:
        return explain_sample(data, device_id)
    event_ms = _event_time(data, reading.timestamp, device_id, event_ms_of)
    if isinstance(event_ms, Violation):
        return event_ms
    line = data if own_id is not None else batch.prefix + data[1:]
    return Sample(reading, line, event_ms, record, sub, device_id, index)


_decode_telemetry = TELEMETRY_DECODER.decode
_decode_reading = BATCHED_READING_DECODER.decode


def _event_time(
    data: bytes, timestamp: str, device_id: str, event_ms_of: Callable[[str], int | None]
) -> int | Violation:
    """The sample's event time, once its bytes are known UTF-8 (the decoder skips unknown fields
    unchecked) and its time is one the core represents."""
    not_utf8 = utf8_violation(data)
    if not_utf8 is not None:
        return Violation(not_utf8.reason, not_utf8.field, not_utf8.detail, device_id)
    event_ms = event_ms_of(timestamp)
    if event_ms is None:
        return _bad_timestamp(device_id)
    if not EVENT_MS_MIN <= event_ms <= EVENT_MS_MAX:
        return Violation(
            RejectReason.TIMESTAMP_OUT_OF_RANGE,
            "timestamp",
            "timestamp must fall between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z in UTC",
            device_id,
        )
    return event_ms


def processing_error(exc: Exception, device_id: str | None = None) -> Violation:
    """The reason for a record whose processing raised: the exception's type and (cut) message."""
    return Violation(RejectReason.PROCESSING_ERROR, None, f"{type(exc).__name__}: {exc}"[:200], device_id)


def _bad_timestamp(device_id: str) -> Violation:
    return Violation(
        RejectReason.INVALID_TIMESTAMP,
        "timestamp",
        "timestamp must be RFC 3339 with an offset or Z",
        device_id,
    )


def _reject(
    record: KinesisRecord,
    sub: int | None,
    why: Violation,
    data: bytes | None = None,
    index: int | None = None,
) -> Reject:
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
        sample_index=index,
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
