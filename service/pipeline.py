"""One batch, end to end: load states, run the core, write every sink, commit states.

Order of effects, chosen so that a failure anywhere leaves nothing half-done for a device:
alerts (put-if-absent, so a retry publishes nothing twice) → archive (records of devices whose
alerts landed) → dead-letter store → device states, last, as the per-device commit. A device whose
alerts, archive or state write failed keeps its old state, so its records come again and are
applied again; every other device's records are done. The returned ``failures`` are the sequence
numbers to report (Lambda's ``batchItemFailures``; the consumer checkpoints below the lowest).
No sink error is dropped: each is kept in ``BatchOutcome.errors`` for the caller to count and log.
The helpers (``load_states``, ``publish_alerts``, ``store_dead_letters``, ``save_states``) are the
one way every mode calls a port: no call for nothing to write, every error into a ``BatchSinks``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.core import (
    Alert,
    BatchResult,
    Detector,
    DeviceState,
    KinesisRecord,
    ProcessedRecord,
    Reject,
    decode_records,
    process_batch,
)
from service.core.records import latest_in_order
from service.ports import (
    AlertPublisher,
    Archive,
    BatchSpan,
    DeadLetterStore,
    DeviceStateStore,
    LoadedStates,
    Sink,
    SinkError,
    Use,
)
from service.sink_health import BatchSinks


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    result: BatchResult
    failures: list[str]
    failed_devices: frozenset[str]
    archive_key: str | None
    errors: tuple[SinkError, ...] = ()  # every sink error of the batch, one per distinct cause
    succeeded: frozenset[Use] = frozenset()  # sinks called in this batch that took every write

    @property
    def failed_sinks(self) -> frozenset[Sink]:
        return frozenset(error.sink for error in self.errors)


@dataclass(frozen=True, slots=True)
class Pipeline:
    detector: Detector
    states: DeviceStateStore
    archive: Archive
    alerts: AlertPublisher
    dead_letters: DeadLetterStore

    def run(
        self,
        shard_id: str,
        records: Iterable[KinesisRecord],
        now_ms: int,
        rejects: Iterable[Reject] = (),
        dead_lettered: Collection[tuple[str, int | None]] = (),
    ) -> BatchOutcome:
        """``dead_lettered``: positions (sequence, sub-sequence) of rejects an earlier run of this very
        batch already stored; they are not stored again. Every ``SinkError`` is kept in ``errors``."""
        records = list(records)
        span = batch_span(records, rejects)
        decoded = decode_records(records, rejects)
        sinks = BatchSinks()
        loaded = load_states(self.states, decoded.device_ids, sinks)
        result = process_batch(decoded, loaded.states, self.detector, now_ms, loaded.unavailable)

        failed = set(loaded.unavailable) | publish_alerts(self.alerts, result.alerts, sinks)
        kept = [p for p in result.processed if p.device_id not in failed]
        key = None
        if kept:
            try:
                key = self.archive.write(shard_id, kept, span)
                sinks.answered(Sink.ARCHIVE, ())
            except SinkError as exc:
                failed.update(result.states)
                sinks.raised(exc)
        fresh = [r for r in result.rejects if (r.sequence_number, r.sub_sequence_number) not in dead_lettered]
        failed_rejects = store_dead_letters(self.dead_letters, fresh, sinks)
        commit = {d: s for d, s in result.states.items() if d not in failed}
        if commit:
            latest = {d: r for d, r in latest_in_order(kept).items() if d in commit}
            failed |= save_states(self.states, commit, latest, sinks)
        failures = result.item_failures(failed, failed_rejects)
        return BatchOutcome(result, failures, frozenset(failed), key, sinks.distinct(), sinks.succeeded)


def load_states(store: DeviceStateStore, device_ids: Collection[str], sinks: BatchSinks) -> LoadedStates:
    """Read ``device_ids`` (none: no call); a failed read makes them unavailable, its cause kept."""
    if not device_ids:
        return LoadedStates()
    try:
        loaded = store.load(device_ids)
    except SinkError as exc:
        sinks.raised(exc)
        return LoadedStates(unavailable=frozenset(device_ids))
    sinks.loaded(loaded.unavailable, loaded.causes)
    return loaded


def publish_alerts(publisher: AlertPublisher, alerts: Sequence[Alert], sinks: BatchSinks) -> set[str]:
    """Publish ``alerts`` (none: no call); the devices whose alerts failed, causes kept."""
    if not alerts:
        return set()
    try:
        failed = publisher.publish(alerts)
    except SinkError as exc:
        sinks.raised(exc)
        return {alert.deviceId for alert in alerts}
    sinks.answered(Sink.ALERTS, failed)
    return set(failed)


def store_dead_letters(store: DeadLetterStore, rejects: Sequence[Reject], sinks: BatchSinks) -> list[Reject]:
    """Store ``rejects`` (none: no call); those not stored, causes kept."""
    if not rejects:
        return []
    try:
        failed = store.put(rejects)
    except SinkError as exc:
        sinks.raised(exc)
        return list(rejects)
    sinks.answered(Sink.DEAD_LETTER, failed)
    return list(failed)


def save_states(
    store: DeviceStateStore,
    states: Mapping[str, DeviceState],
    latest: Mapping[str, ProcessedRecord],
    sinks: BatchSinks,
) -> set[str]:
    """Write ``states`` (none: no call); the devices whose write failed, causes kept."""
    if not states:
        return set()
    try:
        failed = store.save(states, latest)
    except SinkError as exc:
        sinks.raised(exc)
        return set(states)
    sinks.answered(Sink.DEVICE_STATE, failed)
    return set(failed)


def batch_span(records: list[KinesisRecord], rejects: Iterable[Reject]) -> BatchSpan | None:
    """First and last sequence numbers of a batch's records and rejects, and its first arrival."""
    framed = sorted(
        [(r.seq_int, r.sequence_number, r.arrival_ms) for r in records]
        + [(int(r.sequence_number), r.sequence_number, r.arrival_ms) for r in rejects]
    )
    if not framed:
        return None
    return BatchSpan(framed[0][1], framed[-1][1], framed[0][2])
