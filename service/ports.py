"""The ports the core's callers write through. Adapters implement them with boto3; tests with fakes.

Failure contract, the same for every port: a whole-sink outage raises ``SinkError``; a partial
failure is returned as the devices (or rejects) whose effects did not land, so the caller can fail
exactly those devices' records and let the others proceed. Every write is idempotent: writing the
same thing twice leaves the sink as if written once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from service.core import Alert, DeviceState, ProcessedRecord, Reject


class SinkError(Exception):
    """A sink could not take the batch at all (after the client's own retries)."""


class SnapshotMissingError(SinkError):
    """The snapshot a checkpoint names does not exist (deleted by hand or by a lifecycle rule)."""


@dataclass(frozen=True, slots=True)
class LoadedStates:
    states: dict[str, DeviceState] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()  # devices whose state could not be read this time


@dataclass(frozen=True, slots=True)
class BatchSpan:
    """The Kinesis records a batch was read as: first and last sequence numbers, first arrival time."""

    first: str
    last: str
    arrival_ms: int


class Archive(Protocol):
    def write(
        self, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
    ) -> str | None:
        """Store the records as one object whose key is fixed by shard and the batch's span (or, with
        no span, the records' first/last sequence numbers); return the key (None when ``records`` is
        empty). A retry over the same span may carry a different set of records (a device that
        failed the first time now succeeds), so a taken key must neither be overwritten nor make
        those records count as archived."""
        ...


class ArchiveFiles(Protocol):
    def write_file(
        self, shard_id: str, first_sequence: str, arrival_ms: int, records: Sequence[ProcessedRecord]
    ) -> str | None:
        """Store one archive file (``core.archive_file``) as one object whose key is fixed by the shard
        and the file's first sequence number; return the key (None when ``records`` is empty). A key
        already taken is neither overwritten nor allowed to hide records it does not hold."""
        ...


class SnapshotStore(Protocol):
    def put(self, shard_id: str, sequence: str, blob: bytes) -> str:
        """Store a shard snapshot (``core.snapshot``) at a key fixed by shard and sequence, once;
        return the key."""
        ...

    def get(self, key: str) -> bytes:
        """The snapshot at ``key``; ``SnapshotMissingError`` when there is none."""
        ...


class DeviceStateStore(Protocol):
    def load(self, device_ids: Collection[str]) -> LoadedStates: ...

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        """Commit each device's state (and its latest record) only if it moves the device's stream
        position forward; a write refused for being behind counts as done. Returns failed devices."""
        ...


class AlertPublisher(Protocol):
    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        """Publish each alert at most once per ``alertId``. Returns the devices whose alerts failed."""
        ...


class DeadLetterStore(Protocol):
    def put(self, rejects: Sequence[Reject]) -> list[Reject]:
        """Store each reject with its raw bytes and reason. Returns the rejects that failed."""
        ...
