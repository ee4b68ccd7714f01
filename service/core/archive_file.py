"""One shard's open archive file: which records it holds and where it is cut.

A file is a run of consecutive Kinesis records of one shard, cut by the *records themselves*, so a
replay from the same checkpoint cuts the same file (the Kafka Connect S3 sink's rule, on record time):
a record starts a new file when the open file already holds ``max_records`` records, when its payload
would take the file past ``max_bytes`` (raw Kinesis bytes, not the enriched output), or when it arrived
``max_age_ms`` or more after the file's first record (Kinesis arrival time). A file is never empty of
records; it may hold no *processed* record (all rejects), and then it has nothing to upload.

Two cuts do not come from the records: an idle shard's file is closed once ``max_age_ms`` of the
caller's clock has passed since its first record arrived (``expired``), and a flush (shutdown, handoff,
shard end) closes it at once. Those cut points are recorded in the lease before the upload (the
prepared span), and a new owner passes the recorded end as ``forced_last``, so it cuts there too.

Records enter in two steps: ``room`` says how many of a batch belong to this file; once they have all
been applied, ``take`` accounts for them, and ``add`` (any time before) files the processed records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.core.records import KinesisRecord, ProcessedRecord


@dataclass(frozen=True, slots=True)
class FilePolicy:
    max_records: int = 100_000
    max_bytes: int = 5_000_000
    max_age_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class ClosedFile:
    """A cut file: its span (first and last Kinesis sequence numbers, first arrival) and contents."""

    first: str
    last: str
    arrival_ms: int
    records: tuple[ProcessedRecord, ...]
    snapshot: bytes = b""  # the shard's device states as of ``last`` (see ``core.snapshot``)
    devices: frozenset[str] = frozenset()  # the devices that snapshot holds


@dataclass(slots=True)
class ArchiveFile:
    policy: FilePolicy
    forced_last: int | None = None  # a recorded cut: the file ends exactly at this sequence number
    first: str | None = None
    last: str | None = None
    arrival_ms: int = 0
    count: int = 0
    size: int = 0
    records: list[ProcessedRecord] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.first is None

    def room(self, batch: Sequence[KinesisRecord]) -> int:
        """How many of ``batch`` (a prefix) belong to this file; fewer than all means it is full."""
        if self.forced_last is not None:
            return sum(1 for r in batch if r.seq_int <= self.forced_last)
        policy = self.policy
        count, size, first_arrival = self.count, self.size, self.arrival_ms
        for index, record in enumerate(batch):
            if count == 0:
                first_arrival = record.arrival_ms
            elif (
                count >= policy.max_records
                or size + len(record.data) > policy.max_bytes
                or record.arrival_ms - first_arrival >= policy.max_age_ms
            ):
                return index
            count += 1
            size += len(record.data)
        return len(batch)

    def take(self, records: Sequence[KinesisRecord]) -> None:
        """Account for ``records`` (a prefix ``room`` allowed), now applied."""
        for record in records:
            if self.first is None:
                self.first, self.arrival_ms = record.sequence_number, record.arrival_ms
            self.last = record.sequence_number
            self.count += 1
            self.size += len(record.data)

    def add(self, processed: Iterable[ProcessedRecord]) -> None:
        self.records.extend(processed)

    def full(self) -> bool:
        """No further record can join: the recorded end, the record count or the byte size is reached."""
        if self.last is None:
            return False
        if self.forced_last is not None:
            return int(self.last) >= self.forced_last
        return self.count >= self.policy.max_records or self.size >= self.policy.max_bytes

    def expired(self, now_ms: int) -> bool:
        """Idle past its age (by the caller's clock); never while a recorded cut is not reached yet."""
        if self.empty or self.forced_last is not None:
            return False
        return now_ms - self.arrival_ms >= self.policy.max_age_ms

    def close(self, snapshot: bytes = b"", devices: frozenset[str] = frozenset()) -> ClosedFile:
        """The file as cut; this object starts the next one (an ordinary, unforced file)."""
        if self.first is None or self.last is None:
            raise ValueError("an empty archive file cannot be closed")
        closed = ClosedFile(self.first, self.last, self.arrival_ms, tuple(self.records), snapshot, devices)
        self.forced_last, self.first, self.last = None, None, None
        self.arrival_ms = self.count = self.size = 0
        self.records = []
        return closed
