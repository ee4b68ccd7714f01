"""One batch through the core: decoded samples + device states in; decisions out.

Contract (both modes rely on it):

- Inputs are never mutated. ``BatchResult.states`` holds a new state for every device whose stream
  position the batch moved; storing them is what commits the batch for that device.
- A device listed in ``unavailable`` (its state could not be loaded) is not applied at all: its
  records are reported in ``failed`` and will be redelivered. Other devices proceed.
- Records already applied (at or below the device's last stream position) are skipped, so a
  redelivered batch yields no processed records, no alerts and unchanged states.
- A sample whose event time is implausible for its Kinesis arrival time (``DetectionConfig``'s
  ``max_future_skew_ms`` ahead, ``backfill_horizon_ms`` behind; an arrival time of 0 is unknown and
  not checked) is rejected before it touches its device's state. A sample whose processing raises is
  rejected with ``processing_error`` and its device's detectors start afresh: the batch goes on.
- Every alert carries ``publishedAt`` (``now_ms``) and ``delayMs`` (from its ``detectedAt``, event
  time): an episode found in a backlog that a device uploads after hours offline says it is late.
- ``item_failures`` turns the devices whose sink writes failed into the sequence numbers to report:
  each failed device's first record in the batch, so none of its later records count as done.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from service.core.admission import Admission, admit
from service.core.anomalies import STATUS_PRIORITY, Alert, AnomalyType, Status
from service.core.decode import DecodedBatch, Sample, processing_error
from service.core.detection import Detector
from service.core.records import KinesisRecord, ProcessedRecord, Reject, RejectReason, iso_ms
from service.core.state import DeviceState
from service.core.telemetry import parse_rfc3339_ms


@dataclass(slots=True)
class BatchResult:
    processed: list[ProcessedRecord] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    states: dict[str, DeviceState] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    first_sequence: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0  # samples the device sent twice (its ``seq`` or timestamp seen before)
    redelivered: int = 0  # samples Kinesis delivered again (at or below the device's stream position)
    late: int = 0  # samples older than the device's newest: archived, but they move no detector

    def item_failures(
        self, failed_devices: Iterable[str] = (), failed_rejects: Iterable[Reject] = ()
    ) -> list[str]:
        """Sequence numbers to report as failed, ascending by integer value, without repeats."""
        numbers = set(self.failed)
        numbers.update(self.first_sequence[d] for d in failed_devices if d in self.first_sequence)
        numbers.update(r.sequence_number for r in failed_rejects)
        return sorted(numbers, key=int)


def process_batch(
    batch: DecodedBatch,
    states: Mapping[str, DeviceState],
    detector: Detector,
    now_ms: int,
    unavailable: Collection[str] = (),
) -> BatchResult:
    """Apply a decoded batch in order. ``now_ms`` stamps ``processedAt``; the core reads no clock."""
    result = BatchResult(rejects=list(batch.rejects), first_sequence=dict(batch.first_sequence))
    working = result.states
    positions: dict[str, tuple[int, int]] = {}
    processed, alerts, failed = result.processed, result.alerts, result.failed
    observe, processed_at, cfg = detector.observe, iso_ms(now_ms), detector.config
    high_bpm, window, clock_step = cfg.high_heart_rate_bpm, cfg.seq_window, cfg.max_gap_ms
    skew, horizon = cfg.max_future_skew_ms, cfg.backfill_horizon_ms
    for sample in batch.samples:
        telemetry, record, t = sample.telemetry, sample.record, sample.event_ms
        device_id, arrival = sample.device_id, record.arrival_ms
        if arrival > 0 and (t - arrival > skew or (horizon and arrival - t > horizon)):
            result.rejects.append(_out_of_bounds(sample, skew, horizon))
            continue
        state = working.get(device_id)
        if state is None:
            if device_id in unavailable:
                failed.append(record.sequence_number)
                continue
            state = working[device_id] = _working_copy(device_id, states.get(device_id), record, positions)
        sub = sample.sub or 0
        position = (int(record.sequence_number), sub)
        last = positions.get(device_id)
        if last is not None and position <= last:
            result.redelivered += 1
            continue
        positions[device_id] = position
        state.last_shard, state.last_sequence, state.last_sub_sequence = (
            record.shard_id,
            record.sequence_number,
            sub,
        )
        try:
            admission = admit(state, telemetry.seq, t, window, clock_step)
            if admission is Admission.DUPLICATE:
                result.duplicates += 1
                continue
            heart_rate = telemetry.heartRate
            if admission is Admission.NEW:
                anomalies = observe(state, device_id, t, heart_rate, telemetry.steps, telemetry.spo2, alerts)
            else:
                result.late += 1
                anomalies = state.open_anomalies()
        except Exception as exc:
            result.rejects.append(_failed(sample, exc))
            working[device_id] = _detectors_reset(state)
            continue
        if heart_rate > high_bpm:
            status = Status.HIGH_HEART_RATE
        else:  # the common case (nothing open) costs no call
            status = _most_urgent(anomalies) if anomalies else Status.NORMAL
        processed.append(
            ProcessedRecord(
                sample.raw,
                device_id,
                t,
                heart_rate,
                telemetry.steps,
                telemetry.spo2,
                telemetry.skinTemp,
                telemetry.battery,
                telemetry.seq,
                now_ms,
                processed_at,
                status,
                anomalies,
                record.shard_id,
                record.sequence_number,
                sample.sub,
                admission is Admission.LATE,
                record.arrival_ms,
            )
        )
    return _finished(result, states, now_ms)


def _finished(result: BatchResult, states: Mapping[str, DeviceState], now_ms: int) -> BatchResult:
    """The result once its alerts are stamped and its devices left where they were are dropped."""
    working = result.states
    for device_id in [d for d, s in working.items() if _same_position(s, states.get(d))]:
        del working[device_id]  # only redeliveries: nothing to commit
    if result.alerts:
        result.alerts = [_published(alert, now_ms) for alert in result.alerts]
    return result


def _published(alert: Alert, now_ms: int) -> Alert:
    """``alert`` stamped with the time it is published and its delay after detection."""
    detected_ms = parse_rfc3339_ms(alert.detectedAt)
    delay = None if detected_ms is None else now_ms - detected_ms
    return msgspec.structs.replace(alert, publishedAt=iso_ms(now_ms), delayMs=delay)


def _working_copy(
    device_id: str,
    prior: DeviceState | None,
    record: KinesisRecord,
    positions: dict[str, tuple[int, int]],
) -> DeviceState:
    """The batch's own copy of a device's state, its stream position noted in ``positions``."""
    if prior is None:
        return DeviceState()
    if prior.last_sequence and prior.last_shard == record.shard_id:
        positions[device_id] = (int(prior.last_sequence), prior.last_sub_sequence)
    return prior.clone()


def _out_of_bounds(sample: Sample, skew: int, horizon: int) -> Reject:
    """The reject of a sample whose event time is implausible for its arrival time. The device's
    state is untouched, so one such sample never moves its clock (nor silences what follows)."""
    ahead = sample.event_ms - sample.record.arrival_ms
    if ahead > skew:
        reason = RejectReason.TIMESTAMP_IN_FUTURE
        detail = f"timestamp is {ahead} ms ahead of its arrival; at most {skew} ms is accepted"
    else:
        reason = RejectReason.TIMESTAMP_TOO_OLD
        detail = f"timestamp is {-ahead} ms before its arrival; the backfill horizon is {horizon} ms"
    return _sample_reject(sample, reason, "timestamp", detail)


def _failed(sample: Sample, exc: Exception) -> Reject:
    why = processing_error(exc)
    return _sample_reject(sample, why.reason, why.field, why.detail)


def _sample_reject(sample: Sample, reason: RejectReason, field_name: str | None, detail: str) -> Reject:
    record = sample.record
    return Reject(
        data=sample.raw,
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        sub_sequence_number=sample.sub,
        arrival_ms=record.arrival_ms,
        reason=reason,
        field=field_name,
        detail=detail,
        device_id=sample.device_id,
        sample_index=sample.index,
    )


def _detectors_reset(state: DeviceState) -> DeviceState:
    """After a sample's processing raised: keep where the device stands in the stream and in its
    counter and clock, start its detectors afresh (whatever the failure left half-done is dropped)."""
    return DeviceState(
        last_shard=state.last_shard,
        last_sequence=state.last_sequence,
        last_sub_sequence=state.last_sub_sequence,
        last_event_ms=state.last_event_ms,
        device_seq=state.device_seq,
        seq_window=state.seq_window,
    )


def _same_position(state: DeviceState, prior: DeviceState | None) -> bool:
    return (
        prior is not None
        and state.last_sequence == prior.last_sequence
        and state.last_sub_sequence == prior.last_sub_sequence
        and state.last_shard == prior.last_shard
    )


def _most_urgent(anomalies: tuple[AnomalyType, ...]) -> Status:
    for kind in STATUS_PRIORITY:
        if kind in anomalies:
            return Status(kind.value)
    return Status(anomalies[0].value)
