"""In-memory peers of the shard consumer's I/O: a scripted shard reader, the lease table, ListShards.

``FakeLeaseTable`` keeps the conditional semantics of
``service.runtime.consumer.lease_table.LeaseTable``: every
write is conditioned on the owner and the counter of the snapshot passed in, bumps the counter when it
succeeds and returns the lease as now stored; a failed condition returns None (False for ``release``).
Any operation can be made to raise a throttling ``ClientError`` instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from service.core import DEFAULT_CONFIG, Detector, KinesisRecord, iso_ms
from service.core.archive_file import FilePolicy
from service.runtime.consumer.leases import Lease, Sentinel
from service.runtime.consumer.reader import ReadResult
from service.runtime.consumer.resident import ResidentSinks
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeSnapshots, FakeStateStore
from tests.unit.builders import SEQ0, SHARD, T0, record, telemetry

ME = "worker-me"
OTHER = "worker-other"


def throttle(operation: str = "GetRecords") -> ClientError:
    error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}
    return ClientError(error, operation)  # type: ignore[arg-type]


# --- records -------------------------------------------------------------------------------------------


def samples(device_id: str, count: int, heart_rate: int = 70, first_seq: int = 0) -> list[dict[str, Any]]:
    """``count`` samples of one device, 5 s apart, with its own strictly increasing ``seq``."""
    return [
        telemetry(
            deviceId=device_id,
            timestamp=iso_ms(T0 + (first_seq + i) * 5_000),
            heartRate=heart_rate,
            seq=first_seq + i,
        )
        for i in range(count)
    ]


def interleaved(*streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round-robin the devices' samples, keeping each device's own order."""
    out: list[dict[str, Any]] = []
    for group in zip(*streams, strict=True):
        out.extend(group)
    return out


def shard_records(
    payloads: Iterable[bytes | Mapping[str, Any]], first_seq: int = SEQ0, shard: str = SHARD
) -> list[KinesisRecord]:
    """Records of one shard with consecutive (56-digit) sequence numbers from ``first_seq``."""
    return [record(p, first_seq + i, shard) for i, p in enumerate(payloads)]


# --- the reader ----------------------------------------------------------------------------------------

Step = ReadResult | BaseException | Callable[[], Awaitable[ReadResult]]


class FakeReader:
    """Hands out scripted steps in order: a ``ReadResult``, an exception to raise, or an async callable
    (a hook that acts, then returns the result). Once the script is used up, every read is an empty read
    at the tip and ``drained`` is set: by then every scripted batch has been processed, because the
    worker reads again only when the records in hand are done."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps: deque[Step] = deque(steps)
        self.closed = False
        self.push = False
        self.reads = 0
        self.close_calls = 0
        self.drained = asyncio.Event()

    async def read(self) -> ReadResult:
        self.reads += 1
        if not self.steps:
            self.drained.set()
            return ReadResult([], 0)
        step = self.steps.popleft()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, ReadResult):
            return step
        return await step()

    async def close(self) -> None:
        self.close_calls += 1


def batch(records: list[KinesisRecord], *, behind: int = 0, ended: bool = False) -> ReadResult:
    return ReadResult(list(records), behind, ended=ended)


# --- the lease table -----------------------------------------------------------------------------------


@dataclass
class FakeLeaseTable:
    """The lease table in memory, with the same conditions as the DynamoDB one."""

    leases: dict[str, Lease] = field(default_factory=dict)
    failing: dict[str, BaseException] = field(default_factory=dict)  # operation name -> error raised
    writes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (op, shard, owner/checkpoint)
    ensured: int = 0
    journal: list[str] | None = None  # shared with journaling sinks: the order of every effect
    unseen: set[str] = field(default_factory=set)  # leases an eventually consistent scan does not show yet
    gets: list[str] = field(default_factory=list)  # the shards read one by one (strongly consistent)

    def _fail(self, operation: str) -> None:
        error = self.failing.get(operation)
        if error is not None:
            raise error

    def put(self, lease: Lease) -> Lease:
        self.leases[lease.shard_id] = lease
        return lease

    def checkpoints(self, shard_id: str | None = None) -> list[str]:
        return [v or "" for op, s, v in self.writes if op == "checkpoint" and shard_id in (None, s)]

    def steal(self, shard_id: str, owner: str = OTHER) -> Lease:
        """Another worker takes the lease (its own conditional write, which bumps the counter)."""
        current = self.leases[shard_id]
        return self._write("take", replace(current, owner=owner, counter=current.counter + 1))

    def _write(self, operation: str, lease: Lease) -> Lease:
        self.leases[lease.shard_id] = lease
        value = lease.checkpoint if operation == "checkpoint" else lease.owner
        self.writes.append((operation, lease.shard_id, None if value is None else str(value)))
        if self.journal is not None:
            self.journal.append(f"{operation}:{value}")
        return lease

    async def ensure_table(self, **_: Any) -> None:
        self._fail("ensure_table")
        self.ensured += 1

    async def list_leases(self, **_: Any) -> list[Lease]:
        self._fail("list_leases")
        stale = [shard_id for shard_id in self.unseen if shard_id in self.leases]
        return [lease for lease in self.leases.values() if lease.shard_id not in stale]

    async def get(self, shard_id: str) -> Lease | None:
        self._fail("get")
        self.gets.append(shard_id)
        return self.leases.get(shard_id)

    async def create(self, shard_id: str, parents: tuple[str, ...] | list[str] = ()) -> bool:
        self._fail("create")
        if shard_id in self.leases:
            return False
        self._write("create", Lease(shard_id, None, 0, parents=tuple(sorted(parents))))
        return True

    async def renew(self, lease: Lease, me: str) -> Lease | None:
        self._fail("renew")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != me or current.counter != lease.counter:
            return None
        return self._write("renew", replace(current, counter=current.counter + 1))

    async def take(self, lease: Lease, me: str) -> Lease | None:
        self._fail("take")
        if lease.finished:
            raise ValueError(f"lease {lease.shard_id} is finished (SHARD_END) and is never taken")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != lease.owner or current.counter != lease.counter:
            return None
        return self._write("take", replace(current, owner=me, counter=current.counter + 1))

    async def checkpoint(
        self, lease: Lease, me: str, sequence: str, snapshot: str | None = None
    ) -> Lease | None:
        self._fail("checkpoint")
        if sequence != Sentinel.SHARD_END and not (sequence.isascii() and sequence.isdigit()):
            raise ValueError(f"checkpoint must be a decimal sequence number or SHARD_END, not {sequence!r}")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != me or current.counter != lease.counter:
            return None
        checkpoint = Sentinel.SHARD_END if sequence == Sentinel.SHARD_END else sequence
        snapshot = current.snapshot if snapshot is None else snapshot
        moved = replace(current, checkpoint=checkpoint, counter=current.counter + 1, snapshot=snapshot)
        return self._write("checkpoint", moved)

    async def prepare(self, lease: Lease, me: str, first: str, last: str) -> Lease | None:
        self._fail("prepare")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != me or current.counter != lease.counter:
            return None
        return self._write("prepare", replace(current, batch=f"{first}-{last}", counter=current.counter + 1))

    async def request_handoff(self, lease: Lease, thief: str) -> Lease | None:
        self._fail("request_handoff")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != lease.owner or current.finished:
            return None
        if current.pending_owner is not None:
            return None
        return self._write("request_handoff", replace(current, pending_owner=thief))

    async def hand_over(self, lease: Lease, me: str) -> Lease | None:
        self._fail("hand_over")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != me or current.counter != lease.counter:
            return None
        if current.pending_owner is None:
            return None
        handed = replace(
            current, owner=current.pending_owner, pending_owner=None, counter=current.counter + 1
        )
        return self._write("hand_over", handed)

    async def release(self, lease: Lease, me: str) -> bool:
        self._fail("release")
        current = self.leases.get(lease.shard_id)
        if current is None or current.owner != me:
            return False
        self._write("release", replace(current, owner=None, pending_owner=None, counter=current.counter + 1))
        return True

    async def delete_finished(self, lease: Lease) -> bool:
        self._fail("delete_finished")
        if not lease.finished:
            raise ValueError(f"lease {lease.shard_id} is not finished (SHARD_END) and is never deleted")
        current = self.leases.get(lease.shard_id)
        if current is None or not current.finished:
            return False
        del self.leases[lease.shard_id]
        self.writes.append(("delete", lease.shard_id, None))
        return True


# --- ListShards ----------------------------------------------------------------------------------------


def shard(shard_id: str, *parents: str, closed: bool = False, first_seq: int = SEQ0) -> dict[str, Any]:
    """One ``Shards`` entry of ListShards; ``parents``: parent then adjacent parent."""
    entry: dict[str, Any] = {
        "ShardId": shard_id,
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "1"},
        "SequenceNumberRange": {"StartingSequenceNumber": str(first_seq)},
    }
    if closed:
        entry["SequenceNumberRange"]["EndingSequenceNumber"] = str(first_seq + 1_000)
    if parents:
        entry["ParentShardId"] = parents[0]
    if len(parents) > 1:
        entry["AdjacentParentShardId"] = parents[1]
    return entry


class FakeKinesis:
    """ListShards over pages of ``page_size``. As on AWS, a call with ``NextToken`` must not name the
    stream (InvalidArgumentException). GetRecords is not here: workers read through ``FakeReader``."""

    def __init__(self, shards: list[dict[str, Any]], page_size: int = 2) -> None:
        self.shards, self.page_size = shards, page_size
        self.calls: list[dict[str, Any]] = []
        self.failing: BaseException | None = None

    async def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.failing is not None:
            raise self.failing
        if "NextToken" in kwargs:
            if "StreamName" in kwargs:
                raise ClientError(
                    {"Error": {"Code": "InvalidArgumentException", "Message": "both"}}, "ListShards"
                )
            start = int(kwargs["NextToken"].removeprefix("token-"))
        else:
            start = 0
        page = self.shards[start : start + self.page_size]
        response: dict[str, Any] = {"Shards": page}
        if start + self.page_size < len(self.shards):
            response["NextToken"] = f"token-{start + self.page_size}"
        return response

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("FakeKinesis has no GetShardIterator: use FakeReader")

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("FakeKinesis has no GetRecords: use FakeReader")


# --- sinks and time ------------------------------------------------------------------------------------


@dataclass
class Sinks:
    archive: FakeArchive = field(default_factory=FakeArchive)
    states: FakeStateStore = field(default_factory=FakeStateStore)
    alerts: FakeAlertPublisher = field(default_factory=FakeAlertPublisher)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    snapshots: FakeSnapshots = field(default_factory=FakeSnapshots)
    policy: FilePolicy = field(default_factory=FilePolicy)
    latest_interval_ms: int = 60_000
    idle_evict_ms: int = 0

    def resident(self) -> ResidentSinks:
        return ResidentSinks(
            Detector(DEFAULT_CONFIG),
            self.states,
            self.alerts,
            self.dead_letters,
            self.archive,
            self.snapshots,
            self.policy,
            self.latest_interval_ms,
            self.idle_evict_ms,
        )

    def archived(self, shard_id: str | None = None) -> list[str]:
        """Sequence numbers in the archive, object by object in the order the objects were written."""
        return [
            r.sequence_number
            for key, records in self.archive.objects.items()
            if shard_id is None or key.startswith(f"{shard_id}/")
            for r in records
        ]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(condition: Callable[[], bool], what: str, guard_s: float = 1.5) -> None:
    """Yield to the loop until ``condition`` holds; the guard only turns a hang into a clear failure."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    try:
        await asyncio.wait_for(poll(), guard_s)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None
