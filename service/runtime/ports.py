"""The ports the core's callers write through. Adapters implement them with boto3; tests with fakes.

Failure contract, the same for every port: a whole-sink outage raises ``SinkError``, chained to the
SDK's exception, naming the sink, the AWS error code, the resource and whether retrying can help; a
partial failure is returned as the devices (or rejects) whose effects did not land, so the caller can
fail exactly those devices' records and let the others proceed — as ``FailedDevices`` /
``FailedRejects`` when the adapter knows why, carrying one ``SinkError`` per distinct cause. Every
write is idempotent: writing the same thing twice leaves the sink as if written once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from service.core import Alert, DeviceState, ProcessedRecord, Reject
from service.core.window_handoff import HashRange


class Sink(StrEnum):
    """The sinks, as logs and the ``sink`` label of ``vitalstream_sink_errors_total`` name them."""

    ARCHIVE = "archive"
    SNAPSHOTS = "snapshots"
    DEVICE_STATE = "device_state"
    ALERTS = "alerts"
    DEAD_LETTER = "dead_letter"


class Access(StrEnum):
    """Whether a failed call read from the sink or wrote to it: a read that works says nothing of
    writes (an IAM policy may allow one and not the other), so only a success of the same access
    clears a cause."""

    READ = "read"
    WRITE = "write"


Cause = tuple[Sink, str, str]  # (sink, code, resource): what one log line and one readiness cause name
Use = tuple[Sink, Access]  # a sink and how it was used: what a success clears


class SinkError(Exception):
    """A sink could not take a write or a read (after the client's own retries).

    ``code`` is the AWS error code, or the exception's type name for an SDK or network error;
    ``resource`` the bucket, table, topic or queue (name, URL or ARN) — never a device id or other
    patient data; ``permanent`` says that retrying cannot help until someone changes the deployment
    (AccessDenied, a missing resource, a validation error), as opposed to throttling, 5xx and network
    errors. Adapters raise it ``from`` the SDK's exception (``adapters._errors.sink_error``).
    """

    def __init__(
        self, sink: Sink, code: str, resource: str, *, permanent: bool, access: Access = Access.WRITE
    ) -> None:
        super().__init__(f"{sink.value} {resource}: {code}{' (permanent)' if permanent else ''}")
        self.sink = sink
        self.code = code
        self.resource = resource
        self.permanent = permanent
        self.access = access

    @property
    def cause(self) -> Cause:
        return self.sink, self.code, self.resource

    @property
    def use(self) -> Use:
        return self.sink, self.access


class SnapshotMissingError(SinkError):
    """The snapshot a checkpoint names does not exist (deleted by hand or by a lifecycle rule)."""

    def __init__(self, resource: str, code: str = "NoSuchKey") -> None:
        super().__init__(Sink.SNAPSHOTS, code, resource, permanent=True, access=Access.READ)


def distinct(errors: Iterable[SinkError]) -> tuple[SinkError, ...]:
    """The first error of each distinct cause, in order."""
    seen: dict[Cause, SinkError] = {}
    for error in errors:
        seen.setdefault(error.cause, error)
    return tuple(seen.values())


class FailedDevices(set[str]):
    """Devices whose effects did not land, with why (one ``SinkError`` per distinct cause)."""

    def __init__(self, devices: Iterable[str] = (), causes: Iterable[SinkError] = ()) -> None:
        super().__init__(devices)
        self.causes = distinct(causes)


class FailedRejects(list[Reject]):
    """Rejects that could not be stored, with why (one ``SinkError`` per distinct cause)."""

    def __init__(self, rejects: Iterable[Reject] = (), causes: Iterable[SinkError] = ()) -> None:
        super().__init__(rejects)
        self.causes = distinct(causes)


def causes_of(failed: Collection[object], sink: Sink, access: Access = Access.WRITE) -> tuple[SinkError, ...]:
    """Why ``failed`` (a port's partial-failure answer) is not empty: the adapter's causes, or, from an
    implementation that gives none, one transient ``PartialFailure`` of ``sink``."""
    if not failed:
        return ()
    causes: tuple[SinkError, ...] = getattr(failed, "causes", ())
    return causes or (SinkError(sink, "PartialFailure", "", permanent=False, access=access),)


@dataclass(frozen=True, slots=True)
class LoadedStates:
    states: dict[str, DeviceState] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()  # devices whose state could not be read this time
    causes: tuple[SinkError, ...] = ()  # why some are unavailable (one per distinct cause)


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


class HandoffStore(Protocol):
    """One window handoff per shard (``core.window_handoff``), replaced at every window's end."""

    def get(self, shard_id: str) -> bytes | None:
        """The shard's handoff; None when the shard never handed one on."""
        ...

    def put(self, shard_id: str, blob: bytes) -> None: ...

    def shards(self) -> list[str]:
        """Every shard that has a handoff."""
        ...


@dataclass(frozen=True, slots=True)
class ShardLine:
    """A shard's parents (none, one for a split's child, two for a merge's) and its hash key range."""

    parents: tuple[str, ...]
    hash_range: HashRange


class ShardLineage(Protocol):
    def of(self, stream: str, shard_id: str) -> ShardLine:
        """The line of ``stream``'s (its ARN, or its name) shard; ``SinkError`` when the stream cannot
        say."""
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
