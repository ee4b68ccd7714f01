"""Lambda mode per batch: load states, run the core, write every sink, commit states — every batch.

The thinnest variant over ``effects.BatchEffects``: device states live in the device table, so a
batch reads every device it has (holding none), archives its records as one object keyed by its
span (unless ``archive_per_batch`` is off: then the archive role's own mapping writes archive
files, ``service.runtime.archive_role``), and commits the states of the devices whose alerts and
archive landed at its end. Order of
effects, chosen so that a failure anywhere leaves nothing half-done for a device: alerts
(put-if-absent, so a retry publishes nothing twice) → archive (records of devices whose alerts
landed) → dead-letter store → device states, last, as the per-device commit. A device whose alerts,
archive or state write failed keeps its old state, so its records come again and are applied
again; every other device's records are done. The returned ``failures`` are the sequence numbers to
report (Lambda's ``batchItemFailures``). No sink error is dropped: each is kept in
``BatchOutcome.errors`` for the caller to count and log.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from service.core import BatchResult, Detector, KinesisRecord, Reject, decode_records
from service.core.envelope import DEFAULT_LIMITS, MessageLimits
from service.runtime.effects import BatchEffects, Position, batch_span
from service.runtime.ports import (
    AlertPublisher,
    Archive,
    DeadLetterStore,
    DeviceStateStore,
    Sink,
    SinkError,
    Use,
)
from service.runtime.sink_health import BatchSinks
from service.runtime.window_handoffs import WindowHandoffs


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
    """The core and every sink of Lambda mode (the window processor runs over the same ones)."""

    detector: Detector
    states: DeviceStateStore
    archive: Archive
    alerts: AlertPublisher
    dead_letters: DeadLetterStore
    limits: MessageLimits = DEFAULT_LIMITS
    archive_per_batch: bool = True  # False: the archive role's mapping archives (``archive_role``)
    handoffs: WindowHandoffs | None = None  # tumbling windows' handoffs (``build_pipeline`` sets them)

    @property
    def effects(self) -> BatchEffects:
        """The one effects path over these sinks, archiving one object per batch unless the archive
        role archives."""
        archive = self.archive if self.archive_per_batch else None
        return BatchEffects(self.detector, self.states, self.alerts, self.dead_letters, archive)

    def run(
        self,
        shard_id: str,
        records: Iterable[KinesisRecord],
        now_ms: int,
        rejects: Iterable[Reject] = (),
        dead_lettered: Collection[Position] = (),
    ) -> BatchOutcome:
        """``dead_lettered``: positions (sequence, sub-sequence) of rejects an earlier run of this very
        batch already stored; they are not stored again. Every ``SinkError`` is kept in ``errors``."""
        records, rejects = list(records), list(rejects)
        effects, sinks = self.effects, BatchSinks()
        applied = effects.apply(
            shard_id,
            decode_records(records, rejects, self.limits),
            {},
            now_ms,
            sinks,
            span=batch_span(records, rejects),
            dead_lettered=dead_lettered,
        )
        refused = effects.save(applied.moved, applied.latest, sinks)
        failed = applied.failed | refused
        return BatchOutcome(
            applied.result,
            applied.failures(refused),
            failed,
            applied.archive_key,
            sinks.distinct(),
            sinks.succeeded,
        )
