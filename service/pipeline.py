"""One batch, end to end: load states, run the core, write every sink, commit states.

Order of effects, chosen so that a failure anywhere leaves nothing half-done for a device:
alerts (put-if-absent, so a retry publishes nothing twice) → archive (records of devices whose
alerts landed) → dead-letter store → device states, last, as the per-device commit. A device whose
alerts, archive or state write failed keeps its old state, so its records come again and are
applied again; every other device's records are done. The returned ``failures`` are the sequence
numbers to report (Lambda's ``batchItemFailures``; the consumer checkpoints below the lowest).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from service.core import (
    BatchResult,
    Detector,
    KinesisRecord,
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
    SinkError,
)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    result: BatchResult
    failures: list[str]
    failed_devices: frozenset[str]
    archive_key: str | None
    failed_sinks: frozenset[str] = frozenset()  # "state", "alerts", "archive", "dead_letter"


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
        batch already stored; they are not stored again."""
        records = list(records)
        span = batch_span(records, rejects)
        decoded = decode_records(records, rejects)
        sinks: set[str] = set()
        try:
            loaded = self.states.load(decoded.device_ids)
        except SinkError:
            loaded = LoadedStates(unavailable=frozenset(decoded.device_ids))
        if loaded.unavailable:
            sinks.add("state")
        result = process_batch(decoded, loaded.states, self.detector, now_ms, loaded.unavailable)

        try:
            failed_alerts = self.alerts.publish(result.alerts)
        except SinkError:
            failed_alerts = {alert.deviceId for alert in result.alerts}
        if failed_alerts:
            sinks.add("alerts")
        failed = set(loaded.unavailable) | failed_alerts
        kept = [p for p in result.processed if p.device_id not in failed]
        try:
            key = self.archive.write(shard_id, kept, span)
        except SinkError:
            key = None
            failed.update(result.states)
            sinks.add("archive")
        try:
            fresh = [
                r for r in result.rejects if (r.sequence_number, r.sub_sequence_number) not in dead_lettered
            ]
            failed_rejects = self.dead_letters.put(fresh)
        except SinkError:
            failed_rejects = fresh
        if failed_rejects:
            sinks.add("dead_letter")
        commit = {d: s for d, s in result.states.items() if d not in failed}
        if commit:
            latest = {d: r for d, r in latest_in_order(kept).items() if d in commit}
            try:
                failed_states = self.states.save(commit, latest)
            except SinkError:
                failed_states = set(commit)
            if failed_states:
                sinks.add("state")
            failed |= failed_states
        failures = result.item_failures(failed, failed_rejects)
        return BatchOutcome(result, failures, frozenset(failed), key, frozenset(sinks))


def batch_span(records: list[KinesisRecord], rejects: Iterable[Reject]) -> BatchSpan | None:
    """First and last sequence numbers of a batch's records and rejects, and its first arrival."""
    framed = sorted(
        [(r.seq_int, r.sequence_number, r.arrival_ms) for r in records]
        + [(int(r.sequence_number), r.sequence_number, r.arrival_ms) for r in rejects]
    )
    if not framed:
        return None
    return BatchSpan(framed[0][1], framed[-1][1], framed[0][2])
