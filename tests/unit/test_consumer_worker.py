"""ShardConsumer: one shard's read → pipeline → checkpoint loop, over a real Pipeline and in-memory peers.

Every test drives the worker with a scripted reader; a worker reads again only once the records in hand
are done, so "the reader is drained" means every scripted batch went through the sinks and the
checkpoint. Nothing here waits for a duration to pass: waits are for conditions, under a guard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.consumer.leases import Lease, Sentinel
from service.consumer.metrics import ConsumerMetrics
from service.consumer.ownership import HeldLease
from service.consumer.reader import ReadResult
from service.consumer.worker import Ending, Pacing, ShardConsumer
from service.core import Alert, DeviceState, KinesisRecord, ProcessedRecord
from service.ports import BatchSpan, LoadedStates
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeStateStore
from tests.unit.builders import SEQ0, SHARD
from tests.unit.consumer_fakes import (
    ME,
    FakeClock,
    FakeLeaseTable,
    FakeReader,
    Sinks,
    batch,
    eventually,
    interleaved,
    samples,
    shard_records,
    throttle,
)

PACING = Pacing(idle_s=0.01, min_interval_s=0.0, checkpoint_s=0.0, backoff_cap_s=0.01)
FAILOVER_MS = 10_000
GUARD_S = 1.5


def arun(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 5))


def seqs(records: Iterable[KinesisRecord]) -> list[str]:
    return [r.sequence_number for r in records]


def metric(metrics: ConsumerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# --- sinks that keep a journal of their effects, or fail for a while then recover ---------------------


@dataclass
class JournalArchive(FakeArchive):
    journal: list[str] = field(default_factory=list)
    down_for: int = 0  # writes refused before the archive is back

    def write(
        self, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
    ) -> str | None:
        self.down = self.down_for > 0
        self.down_for = max(self.down_for - 1, 0)
        key = super().write(shard_id, records, span)
        if records:
            self.journal.append(f"archive:{records[-1].sequence_number}")
        return key


@dataclass
class JournalStates(FakeStateStore):
    journal: list[str] = field(default_factory=list)
    down_for: int = 0  # loads that fail before the table is back
    refuse_for: int = 0  # saves in which ``refuse_writes`` devices fail before they are accepted

    def load(self, device_ids: Iterable[str]) -> LoadedStates:
        self.down = self.down_for > 0
        self.down_for = max(self.down_for - 1, 0)
        return super().load(list(device_ids))

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        failed = super().save(states, latest)
        if failed:
            self.journal.append("state-refused")
            self.refuse_for -= 1
            if self.refuse_for <= 0:
                self.refuse_writes.clear()
        else:
            self.journal.append("state")
        return failed


@dataclass
class RecoveringAlerts(FakeAlertPublisher):
    journal: list[str] = field(default_factory=list)
    refuse_for: int = 0  # publish calls in which ``refuse_devices`` fail before they are accepted

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        failed = super().publish(alerts)
        if failed:
            self.journal.append("alerts-refused")
            self.refuse_for -= 1
            if self.refuse_for <= 0:
                self.refuse_devices.clear()
        return failed


@dataclass
class Rig:
    table: FakeLeaseTable
    held: HeldLease
    reader: FakeReader
    sinks: Sinks
    metrics: ConsumerMetrics
    consumer: ShardConsumer
    journal: list[str]
    children: list[tuple[dict[str, Any], ...]]

    async def run_until_drained(self) -> Ending:
        """Run until every scripted read is done, then ask for shutdown (SIGTERM) and return the ending."""
        task = asyncio.create_task(self.consumer.run())
        await asyncio.wait_for(self.reader.drained.wait(), GUARD_S)
        self.consumer.request_shutdown()
        return await asyncio.wait_for(task, GUARD_S)

    def stored(self) -> Lease:
        return self.table.leases[SHARD]


def make_rig(
    steps: Iterable[ReadResult | BaseException] = (),
    *,
    pacing: Pacing = PACING,
    clock: FakeClock | None = None,
    checkpoint: str = Sentinel.TRIM_HORIZON,
) -> Rig:
    journal: list[str] = []
    table = FakeLeaseTable(journal=journal)
    lease = table.put(Lease(SHARD, ME, 3, checkpoint))
    held = HeldLease(lease, table, ME, FAILOVER_MS, clock=clock or time.monotonic)
    sinks = Sinks(
        archive=JournalArchive(journal=journal),
        states=JournalStates(journal=journal),
        alerts=RecoveringAlerts(journal=journal),
    )
    reader = FakeReader(steps)
    metrics = ConsumerMetrics()
    children: list[tuple[dict[str, Any], ...]] = []
    consumer = ShardConsumer(held, reader, sinks.pipeline(), metrics, pacing, on_children=children.append)
    return Rig(table, held, reader, sinks, metrics, consumer, journal, children)


def three_devices(count: int, first_seq: int = SEQ0, device_seq: int = 0) -> list[KinesisRecord]:
    """``count`` rounds of watch-a, watch-b, watch-c samples, as one shard delivers them."""
    return shard_records(
        interleaved(*(samples(d, count, first_seq=device_seq) for d in ("watch-a", "watch-b", "watch-c"))),
        first_seq,
    )


def per_device(processed: Iterable[ProcessedRecord]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for record in processed:
        out.setdefault(record.device_id, []).append(int(record.sequence_number))
    return out


def checkpoints_before(journal: list[str], marker: str) -> list[int]:
    """Sequence numbers checkpointed before the last ``marker`` entry of the journal."""
    last = max(i for i, entry in enumerate(journal) if entry == marker)
    return [int(e.split(":", 1)[1]) for e in journal[:last] if e.startswith("checkpoint:")]


def after_steal(table: FakeLeaseTable) -> int:
    """Index of the first lease-table write after another worker took the lease."""
    return 1 + next(i for i, (op, _, owner) in enumerate(table.writes) if op == "take" and owner != ME)


# --- process_records and checkpoints -------------------------------------------------------------------


def test_records_are_archived_in_shard_order_and_checkpointed_after_the_sinks() -> None:
    async def body() -> None:
        first, second = three_devices(3), three_devices(2, SEQ0 + 9, device_seq=3)
        rig = make_rig([batch(first, behind=5_000), batch(second)])

        ending = await rig.run_until_drained()

        assert ending is Ending.SHUTDOWN_REQUESTED
        assert rig.sinks.archived() == seqs(first + second)
        # prepare, flush, then commit: each batch's span is recorded before its sink writes, and every
        # checkpoint follows the archive and state writes of its batch
        assert rig.journal == [
            "prepare:worker-me",
            f"archive:{first[-1].sequence_number}",
            "state",
            f"checkpoint:{first[-1].sequence_number}",
            "prepare:worker-me",
            f"archive:{second[-1].sequence_number}",
            "state",
            f"checkpoint:{second[-1].sequence_number}",
            "release:None",
        ]
        assert rig.stored().checkpoint == second[-1].sequence_number
        assert rig.stored().owner is None
        assert metric(rig.metrics, "vitalstream_records_total", outcome="processed") == 15
        assert metric(rig.metrics, "vitalstream_checkpoints_total") == 2
        assert rig.reader.close_calls == 1

    arun(body())


def test_alert_sink_failure_retries_from_the_lowest_failure_and_archives_each_record_once() -> None:
    async def body() -> None:
        # watch-b is at rest at 130 bpm for 45 s: a tachycardia alert, which SNS refuses three times
        records = shard_records(interleaved(samples("watch-a", 10), samples("watch-b", 10, heart_rate=130)))
        rig = make_rig([batch(records)])
        alerts = rig.sinks.alerts
        assert isinstance(alerts, RecoveringAlerts)
        alerts.refuse_devices, alerts.refuse_for = {"watch-b"}, 3
        first_failure = int(records[1].sequence_number)  # watch-b's first record

        await rig.run_until_drained()

        assert rig.journal.count("alerts-refused") == 3
        assert all(seq < first_failure for seq in checkpoints_before(rig.journal, "alerts-refused"))
        archived = rig.sinks.archived()
        assert sorted(archived, key=int) == seqs(records)  # every record exactly once
        for device, positions in per_device(rig.sinks.archive.records).items():
            assert positions == sorted(positions), device
        assert [a.deviceId for a in alerts.published.values()] == ["watch-b"]
        assert rig.table.checkpoints()[-1] == records[-1].sequence_number
        assert metric(rig.metrics, "vitalstream_sink_errors_total", sink="alerts") == 3
        assert metric(rig.metrics, "vitalstream_records_total", outcome="retried") > 0

    arun(body())


def test_state_table_outage_holds_the_checkpoint_then_every_record_is_archived_once() -> None:
    async def body() -> None:
        records = three_devices(4)
        rig = make_rig([batch(records)])
        states = rig.sinks.states
        assert isinstance(states, JournalStates)
        states.down_for = 3

        await rig.run_until_drained()

        assert rig.table.checkpoints() == [records[-1].sequence_number]  # nothing before the recovery
        assert rig.sinks.archived() == seqs(records)
        assert set(states.latest) == {"watch-a", "watch-b", "watch-c"}
        assert metric(rig.metrics, "vitalstream_sink_errors_total", sink="state") == 3

    arun(body())


def test_state_write_refused_for_one_device_holds_the_checkpoint_and_archives_each_record_once() -> None:
    async def body() -> None:
        records = three_devices(4)
        rig = make_rig([batch(records)])
        states = rig.sinks.states
        assert isinstance(states, JournalStates)
        states.refuse_writes, states.refuse_for = {"watch-b"}, 2

        await rig.run_until_drained()

        assert rig.journal.count("state-refused") == 2
        assert checkpoints_before(rig.journal, "state-refused") == []  # never inside a failing batch
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        # the whole batch runs again under its own span: watch-b's records, archived before its state
        # commit was refused, are found in the batch's object and are not archived a second time
        assert sorted(rig.sinks.archived(), key=int) == seqs(records)
        assert states.latest["watch-b"].sequence_number == records[-2].sequence_number
        for device, positions in per_device(rig.sinks.archive.records).items():
            assert positions == sorted(positions), device

    arun(body())


def test_a_poison_record_goes_to_the_dead_letters_and_the_shard_moves_on() -> None:
    async def body() -> None:
        good = samples("watch-a", 2)
        records = shard_records([good[0], b"{not json", good[1]])
        rig = make_rig([batch(records)])

        await rig.run_until_drained()

        assert rig.sinks.archived() == [records[0].sequence_number, records[2].sequence_number]
        (reject,) = rig.sinks.dead_letters.stored.values()
        assert reject.sequence_number == records[1].sequence_number
        assert reject.data == b"{not json"
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert metric(rig.metrics, "vitalstream_dead_letters_total", reason="invalid_json") == 1
        assert metric(rig.metrics, "vitalstream_records_total", outcome="rejected") == 1

    arun(body())


def test_get_records_throttling_backs_off_then_recovers() -> None:
    async def body() -> None:
        records = three_devices(2)
        rig = make_rig([throttle(), throttle(), batch(records)])

        await rig.run_until_drained()

        assert metric(rig.metrics, "vitalstream_throttles_total", api="GetRecords") == 2
        assert rig.sinks.archived() == seqs(records)
        assert rig.table.checkpoints() == [records[-1].sequence_number]

    arun(body())


def test_a_throttled_checkpoint_is_kept_for_the_next_one() -> None:
    async def body() -> None:
        first, second = three_devices(1), three_devices(1, SEQ0 + 3, device_seq=1)
        rig = make_rig([batch(first)])
        rig.table.failing["checkpoint"] = throttle("UpdateItem")

        async def recover() -> ReadResult:
            rig.table.failing.clear()
            return batch(second)

        rig.reader.steps.append(recover)
        await rig.run_until_drained()

        assert rig.table.checkpoints() == [second[-1].sequence_number]
        assert metric(rig.metrics, "vitalstream_throttles_total", api="DynamoDB") == 1

    arun(body())


# --- endings -------------------------------------------------------------------------------------------


def test_shard_end_checkpoints_shard_end_then_releases_and_reports_children() -> None:
    async def body() -> None:
        first, last = three_devices(2), three_devices(1, SEQ0 + 6, device_seq=2)
        children = ({"ShardId": "shardId-000000000001"}, {"ShardId": "shardId-000000000002"})
        ended = ReadResult(last, 0, ended=True, child_shards=children)
        rig = make_rig([batch(first, behind=100), ended])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.SHARD_ENDED
        assert rig.sinks.archived() == seqs(first + last)
        assert rig.table.checkpoints() == [
            first[-1].sequence_number,
            last[-1].sequence_number,
            Sentinel.SHARD_END,
        ]
        assert rig.journal[-2:] == ["checkpoint:SHARD_END", "release:None"]
        assert rig.stored().finished
        assert rig.stored().owner is None
        assert rig.children == [children]
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="ended") == 1
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="released") == 1

    arun(body())


def test_an_empty_read_at_the_end_of_a_shard_ends_it() -> None:
    async def body() -> None:
        records = three_devices(1)
        rig = make_rig([batch(records), ReadResult([], 0, ended=True)])

        assert await asyncio.wait_for(rig.consumer.run(), GUARD_S) is Ending.SHARD_ENDED
        assert rig.table.checkpoints() == [records[-1].sequence_number, Sentinel.SHARD_END]

    arun(body())


def test_lease_lost_at_renewal_stops_before_the_batch_in_hand() -> None:
    async def body() -> None:
        first = three_devices(1)
        second = three_devices(1, SEQ0 + 3, device_seq=1)
        third = three_devices(1, SEQ0 + 6, device_seq=2)
        rig = make_rig([batch(first)])

        async def stolen_then_renewed() -> ReadResult:
            rig.table.steal(SHARD)  # another worker's take bumps the counter
            assert await rig.held.renew() is False  # the lease loop's next renewal finds out
            return batch(second)

        rig.reader.steps.extend([stolen_then_renewed, batch(third)])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.LEASE_LOST
        assert rig.sinks.archived() == seqs(first)
        assert rig.table.writes[after_steal(rig.table) :] == []  # no checkpoint, no release
        assert rig.stored().owner != ME
        assert rig.stored().checkpoint == first[-1].sequence_number
        assert rig.reader.reads == 2
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="lost") == 1

    arun(body())


def test_lease_lost_at_checkpoint_stops_reading_and_writing() -> None:
    async def body() -> None:
        first = three_devices(1)
        second = three_devices(1, SEQ0 + 3, device_seq=1)
        third = three_devices(1, SEQ0 + 6, device_seq=2)
        rig = make_rig([batch(first)])

        async def stolen() -> ReadResult:
            rig.table.steal(SHARD)
            return batch(second)

        rig.reader.steps.extend([stolen, batch(third)])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.LEASE_LOST
        # the lease moved while the second batch was read: preparing it fails, so nothing of it is
        # written, and nothing after the steal is read or written
        assert rig.sinks.archived() == seqs(first)
        assert rig.table.writes[after_steal(rig.table) :] == []
        assert rig.stored().checkpoint == first[-1].sequence_number
        assert rig.reader.reads == 2

    arun(body())


def test_shutdown_mid_batch_finishes_it_checkpoints_and_releases() -> None:
    async def body() -> None:
        first = three_devices(2)
        second = three_devices(1, SEQ0 + 6, device_seq=2)
        # checkpoints are not due during the run: only the shutdown writes one
        rig = make_rig([batch(first), batch(second)], pacing=Pacing(0.01, 0.0, 60.0, 0.01))
        loop = asyncio.get_running_loop()
        archive = rig.sinks.archive
        assert isinstance(archive, JournalArchive)
        original = archive.write

        def write_then_sigterm(
            shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
        ) -> str | None:
            loop.call_soon_threadsafe(rig.consumer.request_shutdown)  # SIGTERM while the sinks run
            return original(shard_id, records, span)

        archive.write = write_then_sigterm  # type: ignore[method-assign]

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.SHUTDOWN_REQUESTED
        assert rig.sinks.archived() == seqs(first)
        assert rig.journal[-2:] == [f"checkpoint:{first[-1].sequence_number}", "release:None"]
        assert rig.stored().owner is None
        assert rig.reader.reads == 1
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="released") == 1

    arun(body())


def test_shutdown_before_any_record_releases_without_a_checkpoint() -> None:
    async def body() -> None:
        rig = make_rig()
        task = asyncio.create_task(rig.consumer.run())
        await asyncio.wait_for(rig.reader.drained.wait(), GUARD_S)
        rig.consumer.request_shutdown()

        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.table.checkpoints() == []
        assert rig.stored().owner is None
        assert rig.stored().checkpoint == Sentinel.TRIM_HORIZON

    arun(body())


# --- fencing -------------------------------------------------------------------------------------------


def test_fenced_worker_starts_no_batch_until_a_renewal_succeeds() -> None:
    async def body() -> None:
        clock = FakeClock()
        records = three_devices(1)
        rig = make_rig([batch(records)], clock=clock)
        clock.advance(FAILOVER_MS * 2 / 3 / 1000 + 0.5)  # renewals failed for longer than the fence
        assert rig.held.fenced()
        task = asyncio.create_task(rig.consumer.run())

        await eventually(lambda: rig.reader.reads >= 1, "the worker read a batch")
        await asyncio.sleep(0.05)  # give a wrongly unfenced worker every chance to process
        assert rig.sinks.archived() == []

        rig.table.failing["renew"] = throttle("UpdateItem")
        with pytest.raises(ClientError):
            await rig.held.renew()
        await asyncio.sleep(0.05)
        assert rig.held.fenced()
        assert rig.sinks.archived() == []

        rig.table.failing.clear()
        assert await rig.held.renew() is True
        assert not rig.held.fenced()
        await eventually(lambda: rig.sinks.archived() == seqs(records), "the batch ran after the renewal")

        rig.consumer.request_shutdown()
        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED

    arun(body())


def test_shutdown_while_fenced_ends_without_waiting_for_a_renewal() -> None:
    async def body() -> None:
        clock = FakeClock()
        rig = make_rig([batch(three_devices(1))], clock=clock)
        clock.advance(FAILOVER_MS / 1000)
        task = asyncio.create_task(rig.consumer.run())
        await eventually(lambda: rig.reader.reads >= 1, "the worker read a batch")

        rig.consumer.request_shutdown()  # SIGTERM while the lease table is unreachable

        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.sinks.archived() == []
        assert rig.stored().owner is None  # released (the table answers again by now)

    arun(body())


def test_a_lease_lost_while_fenced_ends_lease_lost() -> None:
    async def body() -> None:
        clock = FakeClock()
        rig = make_rig([batch(three_devices(1))], clock=clock)
        clock.advance(FAILOVER_MS / 1000)
        task = asyncio.create_task(rig.consumer.run())
        await eventually(lambda: rig.reader.reads >= 1, "the worker read a batch")

        rig.table.steal(SHARD)
        assert await rig.held.renew() is False

        assert await asyncio.wait_for(task, GUARD_S) is Ending.LEASE_LOST
        assert rig.sinks.archived() == []

    arun(body())
