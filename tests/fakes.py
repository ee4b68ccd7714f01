"""In-memory implementations of the ports, with switches to make them fail the way real sinks do."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from service.core import Alert, DeviceState, ProcessedRecord, Reject
from service.core.window_handoff import HashRange
from service.runtime.ports import (
    Access,
    BatchSpan,
    LoadedStates,
    ShardLine,
    Sink,
    SinkError,
    SnapshotMissingError,
)
from service.runtime.window_handoffs import WindowHandoffs


@dataclass
class FakeArchive:
    objects: dict[str, list[ProcessedRecord]] = field(default_factory=dict)
    down: bool = False
    down_code: str = "ServiceUnavailable"  # what a down archive answers (AccessDenied: permanent)

    def write(
        self, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
    ) -> str | None:
        """As ``S3Archive``: put-if-absent by span; records a taken key lacks go to a key of their own."""
        if self.down:
            raise self._refusal()
        if not records:
            return None
        if span is None:
            span = BatchSpan(records[0].sequence_number, records[-1].sequence_number, 0)
        return self._write_at(f"{shard_id}/{span.first}-{span.last}", records)

    def write_file(
        self, shard_id: str, first_sequence: str, arrival_ms: int, records: Sequence[ProcessedRecord]
    ) -> str | None:
        """As ``S3Archive.write_file``: put-if-absent by shard and first sequence number."""
        if self.down:
            raise self._refusal()
        if not records:
            return None
        return self._write_at(f"{shard_id}/{first_sequence}", records)

    def _refusal(self) -> SinkError:
        permanent = self.down_code == "AccessDenied"
        return SinkError(Sink.ARCHIVE, self.down_code, "archive-bucket", permanent=permanent)

    def _write_at(self, key: str, records: Sequence[ProcessedRecord]) -> str:
        held = {
            (r.sequence_number, r.sub_sequence_number) for r in self.objects.setdefault(key, list(records))
        }
        missing = [r for r in records if (r.sequence_number, r.sub_sequence_number) not in held]
        if missing:
            positions = ",".join(f"{r.sequence_number}.{r.sub_sequence_number}" for r in missing)
            self.objects.setdefault(f"{key}.{positions}", missing)
        return key

    @property
    def records(self) -> list[ProcessedRecord]:
        return [r for records in self.objects.values() for r in records]


@dataclass
class FakeSnapshots:
    objects: dict[str, bytes] = field(default_factory=dict)
    down: bool = False

    def put(self, shard_id: str, sequence: str, blob: bytes) -> str:
        if self.down:
            raise SinkError(Sink.SNAPSHOTS, "ServiceUnavailable", "archive-bucket", permanent=False)
        key = f"{shard_id}/{sequence}"
        self.objects.setdefault(key, blob)
        return key

    def get(self, key: str) -> bytes:
        if self.down:
            raise SinkError(Sink.SNAPSHOTS, "ServiceUnavailable", "archive-bucket", permanent=False)
        if key not in self.objects:
            raise SnapshotMissingError(key)
        return self.objects[key]


@dataclass
class FakeHandoffs:
    """The handoff store (one object per shard, counted) and the stream's shard lines."""

    objects: dict[str, bytes] = field(default_factory=dict)
    lines: dict[str, ShardLine] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)
    puts: list[str] = field(default_factory=list)
    lineage_asked: list[str] = field(default_factory=list)
    down: bool = False

    def get(self, shard_id: str) -> bytes | None:
        self.gets.append(shard_id)
        if self.down:
            raise SinkError(
                Sink.SNAPSHOTS, "AccessDenied", "archive-bucket", permanent=True, access=Access.READ
            )
        return self.objects.get(shard_id)

    def put(self, shard_id: str, blob: bytes) -> None:
        if self.down:
            raise SinkError(Sink.SNAPSHOTS, "AccessDenied", "archive-bucket", permanent=True)
        self.puts.append(shard_id)
        self.objects[shard_id] = blob

    def shards(self) -> list[str]:
        return sorted(self.objects)

    def of(self, stream: str, shard_id: str) -> ShardLine:
        self.lineage_asked.append(shard_id)
        return self.lines.get(shard_id, ShardLine((), HashRange(0, 2**128 - 1)))

    def handoffs(self) -> WindowHandoffs:
        return WindowHandoffs(self, self)


@dataclass
class FakeStateStore:
    states: dict[str, DeviceState] = field(default_factory=dict)
    latest: dict[str, ProcessedRecord] = field(default_factory=dict)
    unreadable: set[str] = field(default_factory=set)
    refuse_writes: set[str] = field(default_factory=set)
    down: bool = False

    def load(self, device_ids: Collection[str]) -> LoadedStates:
        if self.down:
            raise SinkError(Sink.DEVICE_STATE, "EndpointConnectionError", "state-table", permanent=False)
        found = {
            d: self.states[d].clone() for d in device_ids if d in self.states and d not in self.unreadable
        }
        return LoadedStates(found, frozenset(set(device_ids) & self.unreadable))

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        failed = set(states) & self.refuse_writes
        for device_id, state in states.items():
            if device_id not in failed:
                self.states[device_id] = state.clone()
                if device_id in latest:
                    self.latest[device_id] = latest[device_id]
        return failed


@dataclass
class FakeAlertPublisher:
    published: dict[str, Alert] = field(default_factory=dict)
    refuse_devices: set[str] = field(default_factory=set)
    down: bool = False

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        if self.down:
            raise SinkError(Sink.ALERTS, "AuthorizationError", "alert-topic", permanent=True)
        failed: set[str] = set()
        for alert in alerts:
            if alert.deviceId in self.refuse_devices:
                failed.add(alert.deviceId)
            else:
                self.published.setdefault(alert.alertId, alert)
        return failed


@dataclass
class FakeDeadLetters:
    stored: dict[tuple[str, str, int | None], Reject] = field(default_factory=dict)
    down: bool = False

    def put(self, rejects: Sequence[Reject]) -> list[Reject]:
        if self.down:
            raise SinkError(Sink.DEAD_LETTER, "ServiceUnavailable", "dead-letter-queue", permanent=False)
        for reject in rejects:
            self.stored[(reject.shard_id, reject.sequence_number, reject.sub_sequence_number)] = reject
        return []
