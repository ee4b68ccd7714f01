"""The effects of one batch on the sinks, written once for every mode.

Lambda per batch (``pipeline.Pipeline``), Lambda windows (``window.WindowProcessor``) and the consumer
(``consumer.resident.ResidentShard``) are thin variants over ``BatchEffects``, as Powertools' batch
processors are over ``BasePartialProcessor``. They differ only in where device states live between
batches (the device table, the window state, the lease owner's memory), in how processed records are
archived (one object per batch, or files the consumer cuts) and in when moved states reach the
device table (every batch; at a status change or the window's end; through the latest-state
coalescer). ``BatchEffects.apply`` runs one batch, in this order:

1. read from the device table the devices the caller does not hold (``load``); a device whose read
   failed is unavailable: its records fail (the core reports them), its cause is kept;
2. the core (``process_batch``), against the held and the loaded states;
3. publish the batch's alerts (``publish``; put-if-absent by alert id: a retry publishes nothing twice);
4. with a per-batch ``archive``: one object of the records of devices whose alerts landed, keyed by
   the batch's span; when it fails, every device of the batch fails;
5. store the rejects in the dead-letter store (``store_dead_letters``), except those whose position
   (sequence number, sub-sequence number) is in ``dead_lettered``: an earlier run of this very batch
   stored them. The same dedupe in every mode.

Device states are saved by the caller, last, as the per-device commit (``save``), from
``AppliedBatch.moved``: the states of devices whose read, alerts and archive all landed.

Guarantees: no port is called with nothing to write (or read); every ``SinkError`` a port raises or
answers with goes into the caller's ``BatchSinks``, none is dropped; a device that failed keeps its
old state (it is not in ``moved``), so its records come again and apply again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from service.core import (
    Alert,
    BatchResult,
    Detector,
    DeviceState,
    KinesisRecord,
    ProcessedRecord,
    Reject,
    process_batch,
)
from service.core.decode import DecodedBatch
from service.core.records import latest_in_order
from service.runtime.ports import (
    AlertPublisher,
    Archive,
    BatchSpan,
    DeadLetterStore,
    DeviceStateStore,
    LoadedStates,
    Sink,
    SinkError,
)
from service.runtime.sink_health import BatchSinks

Position = tuple[str, int | None]  # a reject's (sequence number, sub-sequence number)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """What the sinks took of one batch, before any device state is saved."""

    result: BatchResult
    loaded: dict[str, DeviceState]  # read from the device table for this batch: they join the held ones
    failed: frozenset[str]  # devices whose read, alerts or archive failed: their records come again
    failed_rejects: tuple[Reject, ...]  # rejects the dead-letter store did not take
    kept: list[ProcessedRecord]  # processed records of devices whose read and alerts landed
    archive_key: str | None = None

    @property
    def moved(self) -> dict[str, DeviceState]:
        """The states the batch moved of devices that did not fail: what a commit saves."""
        return {d: s for d, s in self.result.states.items() if d not in self.failed}

    @property
    def latest(self) -> dict[str, ProcessedRecord]:
        """The newest in-order processed record of each device of ``moved`` that has one."""
        moved = self.moved
        return {d: r for d, r in latest_in_order(self.kept).items() if d in moved}

    def failures(self, refused: Collection[str] = ()) -> list[str]:
        """The sequence numbers to report (or checkpoint below), with the devices whose state the
        table ``refused`` as failed too."""
        return self.result.item_failures(self.failed | frozenset(refused), self.failed_rejects)


@dataclass(frozen=True, slots=True)
class BatchEffects:
    """The core and the sinks a batch has effects on; ``archive`` None: the caller archives files."""

    detector: Detector
    states: DeviceStateStore
    alerts: AlertPublisher
    dead_letters: DeadLetterStore
    archive: Archive | None = None

    def apply(
        self,
        shard_id: str,
        batch: DecodedBatch,
        held: Mapping[str, DeviceState],
        now_ms: int,
        sinks: BatchSinks,
        *,
        span: BatchSpan | None = None,
        dead_lettered: Collection[Position] = (),
    ) -> AppliedBatch:
        """Steps 1 to 5 of the module's order for ``batch`` of ``shard_id``. ``held``: the states the
        caller already holds (not read again); ``span``: the batch's archive key."""
        loaded = self.load([d for d in batch.device_ids if d not in held], sinks)
        known = {**loaded.states, **held} if loaded.states else held
        result = process_batch(batch, known, self.detector, now_ms, loaded.unavailable)
        failed = set(loaded.unavailable) | self.publish(result.alerts, sinks)
        kept = [p for p in result.processed if p.device_id not in failed]
        key = None
        if self.archive is not None and kept:
            try:
                key = self.archive.write(shard_id, kept, span)
                sinks.answered(Sink.ARCHIVE, ())
            except SinkError as exc:
                failed.update(result.states)
                sinks.raised(exc)
        failed_rejects = self.store_dead_letters(result.rejects, dead_lettered, sinks)
        return AppliedBatch(result, loaded.states, frozenset(failed), tuple(failed_rejects), kept, key)

    def load(self, device_ids: Collection[str], sinks: BatchSinks) -> LoadedStates:
        """Read ``device_ids`` (none: no call); a failed read makes them unavailable, its cause kept."""
        if not device_ids:
            return LoadedStates()
        try:
            loaded = self.states.load(device_ids)
        except SinkError as exc:
            sinks.raised(exc)
            return LoadedStates(unavailable=frozenset(device_ids))
        sinks.loaded(loaded.unavailable, loaded.causes)
        return loaded

    def publish(self, alerts: Sequence[Alert], sinks: BatchSinks) -> set[str]:
        """Publish ``alerts`` (none: no call); the devices whose alerts failed, causes kept."""
        if not alerts:
            return set()
        everyone = {alert.deviceId for alert in alerts}
        return set(_written(Sink.ALERTS, lambda: self.alerts.publish(alerts), everyone, sinks))

    def store_dead_letters(
        self, rejects: Sequence[Reject], dead_lettered: Collection[Position], sinks: BatchSinks
    ) -> list[Reject]:
        """Store the ``rejects`` whose position is not in ``dead_lettered`` (none: no call); those
        not stored, causes kept."""
        fresh = [r for r in rejects if (r.sequence_number, r.sub_sequence_number) not in dead_lettered]
        if not fresh:
            return []
        return list(_written(Sink.DEAD_LETTER, lambda: self.dead_letters.put(fresh), fresh, sinks))

    def save(
        self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord], sinks: BatchSinks
    ) -> set[str]:
        """Write ``states`` with their ``latest`` records (none: no call); the devices whose write
        failed, causes kept."""
        if not states:
            return set()
        return set(_written(Sink.DEVICE_STATE, lambda: self.states.save(states, latest), set(states), sinks))


def _written(
    sink: Sink, write: Callable[[], Collection[T]], everything: Collection[T], sinks: BatchSinks
) -> Collection[T]:
    """One write call to ``sink``: what it did not take (``everything`` when it raised), every cause
    kept in ``sinks``."""
    try:
        failed = write()
    except SinkError as exc:
        sinks.raised(exc)
        return everything
    sinks.answered(sink, failed)
    return failed


def batch_span(records: Sequence[KinesisRecord], rejects: Iterable[Reject]) -> BatchSpan | None:
    """First and last sequence numbers of a batch's records and rejects, and its first arrival."""
    framed = sorted(
        [(r.seq_int, r.sequence_number, r.arrival_ms) for r in records]
        + [(int(r.sequence_number), r.sequence_number, r.arrival_ms) for r in rejects]
    )
    if not framed:
        return None
    return BatchSpan(framed[0][1], framed[-1][1], framed[0][2])
