"""One shard's resident state: device states in memory, the open archive file, the latest-state view.

The Flink / Kafka Streams shape. A lease owner holds every device state of its shard in memory: it
restores them once, from the snapshot the lease's checkpoint names (``restore``), and reads a device
from the device table only the first time it sees one the snapshot does not hold — never per batch.
Each batch (``process``) is run through the core against those states; its alerts and dead letters
are stored at once; its processed records go into the open archive file; its moved states go to the
latest-state coalescer, whose due writes the caller makes off the batch path (``write_latest``, in
another thread: a slow device table never delays the next batch's alerts). When the file is cut
(``core.archive_file``) the outcome carries it, closed, with a snapshot of the states as of its last
record; the caller uploads both (``upload``), commits the checkpoint that names the snapshot, then
calls ``committed``.

Idle devices leave (``core.residency``, after ``idle_evict_ms`` of arrival time without a record):
at a cut, they are dropped from memory and left out of its snapshot, and ``upload`` writes their
latest states to the device table (each one the table may lack) before it stores that snapshot, so
a snapshot never lacks a device whose state the table lacks. One that sends again before that
upload is taken back from the departing states; after it, it is read from the table, once.

Contract with the caller (``worker.ShardConsumer``):

- ``process`` consumes a prefix of the records it is given (``consumed``); the rest belong to the next
  file. With ``failures`` (a sink refused some devices) nothing is consumed and nothing applied: the
  same records must be given again. What did land is idempotent: alerts are put-if-absent by id, and
  the caller passes the positions of the dead letters already stored.
- Closed files are uploaded and checkpointed in the order they were cut, one at a time; ``process``
  may go on with later records meanwhile (``upload`` reads only the closed file it is given).
- No sink error is dropped: ``StepOutcome.errors`` and ``LatestWrites.errors`` carry every one (one
  per distinct cause), ``upload`` and ``restore`` raise theirs.
- Everything here is synchronous boto3 I/O: call it from worker threads. ``write_latest`` and
  ``upload`` may each run in a thread of their own while ``process`` runs in another; nothing else
  may run concurrently.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.core import (
    BatchResult,
    Detector,
    DeviceState,
    KinesisRecord,
    decode_records,
)
from service.core.archive_file import ArchiveFile, ClosedFile, FilePolicy
from service.core.envelope import DEFAULT_LIMITS, MessageLimits
from service.core.latest_state import LatestStateCoalescer, Write
from service.core.records import latest_in_order
from service.core.residency import idle_devices, last_arrivals
from service.core.snapshot import decode_resident, encode_snapshot
from service.runtime.effects import BatchEffects, Position
from service.runtime.ports import (
    AlertPublisher,
    ArchiveFiles,
    DeadLetterStore,
    DeviceStateStore,
    Sink,
    SinkError,
    SnapshotStore,
    Use,
)
from service.runtime.sink_health import BatchSinks


@dataclass(frozen=True, slots=True)
class ResidentSinks:
    """What every shard of a replica shares: the core, the sinks, the file and view cadences."""

    detector: Detector
    states: DeviceStateStore
    alerts: AlertPublisher
    dead_letters: DeadLetterStore
    archive: ArchiveFiles
    snapshots: SnapshotStore
    policy: FilePolicy
    latest_interval_ms: int
    idle_evict_ms: int = 0  # a device silent this long (arrival time) leaves at the next cut; 0: never
    limits: MessageLimits = DEFAULT_LIMITS

    @property
    def effects(self) -> BatchEffects:
        """The one effects path over these sinks; no per-batch archive (the shard archives files)."""
        return BatchEffects(self.detector, self.states, self.alerts, self.dead_letters)


@dataclass(frozen=True, slots=True)
class LatestWrites:
    landed: int
    refused: int
    errors: tuple[SinkError, ...] = ()  # why some were refused, one per distinct cause
    succeeded: frozenset[Use] = frozenset()  # the device table, when it took every write


@dataclass(frozen=True, slots=True)
class StepOutcome:
    result: BatchResult
    consumed: int
    failures: list[str]
    failed_devices: frozenset[str]
    errors: tuple[SinkError, ...] = ()  # every sink error of the step, one per distinct cause
    succeeded: frozenset[Use] = frozenset()  # sinks called in the step that took every write
    closed: ClosedFile | None = None

    @property
    def failed_sinks(self) -> frozenset[Sink]:
        return frozenset(error.sink for error in self.errors)


class ResidentShard:
    def __init__(self, shard_id: str, sinks: ResidentSinks, forced_last: int | None = None) -> None:
        self.shard_id = shard_id
        self._sinks = sinks
        self._effects = sinks.effects
        self._states: dict[str, DeviceState] = {}
        self._arrivals: dict[str, int] = {}  # every resident device's last record's arrival time
        self._file = ArchiveFile(sinks.policy, forced_last)
        self._file_devices: set[str] = set()  # devices with a record in the open file
        self._file_newest_ms = -1  # the newest arrival time in the open file
        self._latest = LatestStateCoalescer(sinks.latest_interval_ms)
        self._latest_lock = threading.Lock()  # ``write_latest`` and ``upload`` run beside ``process``
        # cut files not committed yet (by last sequence number, in cut order): the devices that left
        # at each cut, with the writes that put their latest states in the table (guarded by the lock)
        self._departing: dict[str, tuple[frozenset[str], dict[str, Write]]] = {}

    @property
    def devices(self) -> int:
        return len(self._states)

    @property
    def buffered(self) -> int:
        """Processed records in the open file, not yet uploaded."""
        return len(self._file.records)

    def restore(self, snapshot_key: str | None) -> int:
        """Load the states of the snapshot at ``snapshot_key`` (none: start empty); how many.
        ``SinkError`` (``SnapshotMissingError`` when the object is gone) propagates."""
        if snapshot_key is None:
            return 0
        restored = decode_resident(self._sinks.snapshots.get(snapshot_key))
        states = restored.states
        self._states, self._arrivals = states, restored.arrivals
        with self._latest_lock:
            self._latest.cover(states)
        return len(states)

    def process(
        self, records: Sequence[KinesisRecord], now_ms: int, dead_lettered: Collection[Position]
    ) -> StepOutcome:
        """Run the prefix of ``records`` that belongs to the open file through the one effects path,
        holding the resident states. ``dead_lettered``: positions of rejects an earlier run of these
        very records already stored; they are not stored again."""
        room = self._file.room(records)
        if room == 0 and self._file.empty:  # a recorded cut whose records are gone (trimmed)
            self._file.forced_last = None
            room = self._file.room(records)
        if room == 0:  # the first record starts the next file: cut this one first
            return StepOutcome(BatchResult(), 0, [], frozenset(), closed=self._cut())
        part = records[:room]
        decoded = decode_records(part, limits=self._sinks.limits)
        sinks = BatchSinks()
        self._take_back(decoded.device_ids)
        applied = self._effects.apply(
            self.shard_id, decoded, self._states, now_ms, sinks, dead_lettered=dead_lettered
        )
        arrived = last_arrivals(decoded.samples)
        self._take_in(applied.loaded, arrived)
        result, failures = applied.result, applied.failures()
        errors, succeeded = sinks.distinct(), sinks.succeeded
        if failures:  # all or nothing: the same records come again, and apply again from the same states
            return StepOutcome(result, 0, failures, applied.failed, errors, succeeded)
        self._states.update(result.states)
        self._arrivals.update((d, t) for d, t in arrived.items() if d in self._states)
        self._file_devices.update(arrived)
        self._file_newest_ms = max(self._file_newest_ms, *(r.arrival_ms for r in part))
        self._file.add(result.processed)
        self._file.take(part)
        with self._latest_lock:
            self._latest.observe(result.states, latest_in_order(result.processed))
        closed = self._cut() if room < len(records) or self._file.full() else None
        return StepOutcome(result, room, [], frozenset(), errors, succeeded, closed)

    def close_if_idle(self, now_ms: int) -> ClosedFile | None:
        """Cut the open file when it has been open for its age by ``now_ms`` (an idle shard)."""
        return self._cut() if self._file.expired(now_ms) else None

    def close(self) -> ClosedFile | None:
        """Cut the open file now (shutdown, handoff, shard end); None when it is empty."""
        return None if self._file.empty else self._cut()

    def upload(self, closed: ClosedFile) -> str:
        """Store the file, the latest states of the devices that left at its cut, then its snapshot
        (each once, whoever else tried); the snapshot's key. Raises ``SinkError``."""
        self._sinks.archive.write_file(self.shard_id, closed.first, closed.arrival_ms, closed.records)
        with self._latest_lock:
            _, writes = self._departing.get(closed.last, (frozenset(), {}))
        sinks = BatchSinks()
        if self._save(writes, sinks):  # the checkpoint waits until every leaving device is in the table
            raise sinks.errors[0]
        return self._sinks.snapshots.put(self.shard_id, closed.last, closed.snapshot)

    def committed(self, closed: ClosedFile) -> int:
        """The checkpoint naming ``closed``'s snapshot is written: its devices may go to the table.
        Returns how many devices left at its cut."""
        with self._latest_lock:
            left, _ = self._departing.pop(closed.last, (frozenset(), {}))
            later = set().union(*(devices for devices, _ in self._departing.values()))
            self._latest.cover(closed.devices - later)  # not those gone since (its snapshot is stale)
        return len(left)

    def write_latest(self, now_ms: int, *, flush: bool = False) -> LatestWrites:
        """Write the device-table items that are due (every pending one with ``flush``). A refused
        write stays pending and is tried again by the next call."""
        with self._latest_lock:
            writes = self._latest.due(now_ms, flush=flush)
        if not writes:
            return LatestWrites(0, 0)
        sinks = BatchSinks()
        refused = self._save(writes, sinks)
        landed: dict[str, Write] = {d: w for d, w in writes.items() if d not in refused}
        with self._latest_lock:
            self._latest.written(landed, now_ms)
        return LatestWrites(len(landed), len(refused), sinks.distinct(), sinks.succeeded)

    @property
    def latest_pending(self) -> int:
        with self._latest_lock:
            return self._latest.pending

    def _cut(self) -> ClosedFile:
        last = self._file.last
        assert last is not None
        idle = idle_devices(
            self._arrivals, self._file_newest_ms, self._sinks.idle_evict_ms, self._file_devices
        )
        leaving = {device: self._states.pop(device) for device in idle}
        for device in idle:
            del self._arrivals[device]
        with self._latest_lock:
            self._departing[last] = (frozenset(leaving), self._latest.depart(leaving))
        self._file_devices, self._file_newest_ms = set(), -1
        snapshot = encode_snapshot(self.shard_id, last, self._states, self._arrivals)
        return self._file.close(snapshot, frozenset(self._states))

    def _save(self, writes: Mapping[str, Write], sinks: BatchSinks) -> set[str]:
        """Make the coalescer's (or a departure's) ``writes`` through the one save; the refused."""
        states = {device: state for device, (state, _) in writes.items()}
        latest = {device: record for device, (_, record) in writes.items() if record is not None}
        return self._effects.save(states, latest, sinks)

    def _take_back(self, device_ids: Iterable[str]) -> None:
        """Devices not resident that left at a cut not yet committed come back with their states
        (the latest departure first); the others the effects path reads from the device table."""
        unknown = [d for d in device_ids if d not in self._states]
        if not unknown:
            return
        with self._latest_lock:
            for _, writes in reversed(self._departing.values()):  # the latest departure first
                for device in unknown:
                    if device in writes and device not in self._states:
                        self._states[device] = writes[device][0].clone()

    def _take_in(self, loaded: Mapping[str, DeviceState], arrived: Mapping[str, int]) -> None:
        """Devices read from the table join the resident states (whatever became of the batch);
        every device of the batch that is resident without an arrival gets its arrival."""
        self._states.update(loaded)
        self._arrivals.update(
            (d, t) for d, t in arrived.items() if d in self._states and d not in self._arrivals
        )
