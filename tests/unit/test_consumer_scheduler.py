"""Scheduler: shard sync from ListShards, lease rounds following ``leases.plan``, consumers started and
stopped, health. In-memory lease table and Kinesis; a real Pipeline over in-memory sinks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.runtime.consumer import scheduler as scheduler_module
from service.runtime.consumer.leases import Lease, Sentinel
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.reader import ReadResult
from service.runtime.consumer.scheduler import Scheduler, SchedulerConfig
from service.runtime.consumer.worker import Pacing
from tests.unit.builders import SEQ0
from tests.unit.consumer_fakes import (
    ME,
    OTHER,
    FakeClock,
    FakeKinesis,
    FakeLeaseTable,
    FakeReader,
    Sinks,
    Step,
    eventually,
    samples,
    shard,
    shard_records,
    throttle,
)

PACING = Pacing(idle_s=0.01, min_interval_s=0.0, backoff_cap_s=0.01)
STREAM = "vitalstream-telemetry"
GUARD_S = 1.5


def sid(n: int) -> str:
    return f"shardId-{n:012d}"


def arun(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 5))


def metric(metrics: ConsumerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@dataclass
class Rig:
    scheduler: Scheduler
    table: FakeLeaseTable
    kinesis: FakeKinesis
    metrics: ConsumerMetrics
    sinks: Sinks
    scripts: dict[str, list[Step]]
    readers: dict[str, FakeReader] = field(default_factory=dict)
    given: list[Lease] = field(default_factory=list)  # the leases readers were made for

    async def sync_only(self) -> None:
        """``run`` with the stop already set: ensure the table, one shard sync, then shut down."""
        stop = asyncio.Event()
        stop.set()
        await asyncio.wait_for(self.scheduler.run(stop), GUARD_S)

    def owners(self) -> dict[str, str | None]:
        return {shard_id: lease.owner for shard_id, lease in sorted(self.table.leases.items())}


def make_rig(
    shards: list[dict[str, Any]],
    *,
    table: FakeLeaseTable | None = None,
    scripts: dict[str, list[Step]] | None = None,
    failover_ms: int = 300,
    page_size: int = 2,
) -> Rig:
    table = table or FakeLeaseTable()
    kinesis = FakeKinesis(shards, page_size)
    metrics = ConsumerMetrics()
    sinks = Sinks()
    config = SchedulerConfig(
        worker_id=ME, stream_name=STREAM, failover_ms=failover_ms, shard_sync_ms=60_000, pacing=PACING
    )
    rig: Rig

    def reader_for(lease: Lease) -> FakeReader:
        reader = FakeReader(rig.scripts.get(lease.shard_id, ()))
        rig.readers[lease.shard_id] = reader
        rig.given.append(lease)
        return reader

    scheduler = Scheduler(config, table, kinesis, reader_for, sinks.resident(), metrics)
    rig = Rig(scheduler, table, kinesis, metrics, sinks, scripts or {})
    return rig


# --- shard sync ----------------------------------------------------------------------------------------


def test_shard_sync_follows_every_page_and_creates_one_lease_per_shard_with_its_parents() -> None:
    async def body() -> None:
        shards = [
            shard(sid(0), closed=True),
            shard(sid(1), closed=True),
            shard(sid(2), sid(0)),  # split of 0
            shard(sid(3), sid(0)),
            shard(sid(4), sid(1), sid(3)),  # merge of 1 with its adjacent 3
        ]
        rig = make_rig(shards, page_size=2)

        await rig.sync_only()

        assert rig.table.ensured == 1
        assert rig.kinesis.calls == [
            {"StreamName": STREAM},
            {"NextToken": "token-2"},
            {"NextToken": "token-4"},
        ]
        assert {s: lease.parents for s, lease in rig.table.leases.items()} == {
            sid(0): (),
            sid(1): (),
            sid(2): (sid(0),),
            sid(3): (sid(0),),
            sid(4): (sid(1), sid(3)),
        }
        for lease in rig.table.leases.values():
            assert (lease.owner, lease.counter, lease.checkpoint) == (None, 0, Sentinel.TRIM_HORIZON)

    arun(body())


def test_shard_sync_leaves_existing_leases_untouched() -> None:
    async def body() -> None:
        table = FakeLeaseTable()
        table.put(Lease(sid(0), OTHER, 9, str(SEQ0)))
        rig = make_rig([shard(sid(0)), shard(sid(1))], table=table)

        await rig.sync_only()
        await rig.sync_only()

        assert table.leases[sid(0)] == Lease(sid(0), OTHER, 9, str(SEQ0))
        assert [(op, s) for op, s, _ in table.writes] == [("create", sid(1))]

    arun(body())


# --- lease rounds --------------------------------------------------------------------------------------


def test_a_lease_round_takes_free_leases_and_starts_their_consumers() -> None:
    async def body() -> None:
        records = shard_records(samples("watch-a", 3), shard=sid(1))
        rig = make_rig([shard(sid(0)), shard(sid(1))], scripts={sid(1): [ReadResult(records, 0)]})
        await rig.sync_only()

        await rig.scheduler.lease_round()

        assert rig.scheduler.held == [sid(0), sid(1)]
        assert rig.owners() == {sid(0): ME, sid(1): ME}
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="taken") == 2
        assert metric(rig.metrics, "vitalstream_leases_held") == 2
        await eventually(rig.readers[sid(1)].drained.is_set, "shard 1 was read")
        assert rig.sinks.archived(sid(1)) == [r.sequence_number for r in records]
        assert rig.table.leases[sid(1)].checkpoint == records[-1].sequence_number

        await rig.sync_only()  # shutdown: every consumer checkpoints and releases
        assert rig.owners() == {sid(0): None, sid(1): None}
        assert rig.scheduler.held == []

    arun(body())


def test_children_start_only_after_their_parent_reached_shard_end() -> None:
    async def body() -> None:
        parent_may_end = asyncio.Event()
        records = shard_records(samples("watch-a", 2), shard=sid(0))

        async def last_batch_of_the_parent() -> ReadResult:
            await parent_may_end.wait()
            return ReadResult(records, 0, ended=True, child_shards=({"ShardId": sid(1)},))

        rig = make_rig(
            [shard(sid(0), closed=True), shard(sid(1), sid(0)), shard(sid(2), sid(0))],
            scripts={sid(0): [last_batch_of_the_parent]},
        )
        await rig.sync_only()

        await rig.scheduler.lease_round()
        await rig.scheduler.lease_round()
        assert rig.scheduler.held == [sid(0)]
        assert rig.owners() == {sid(0): ME, sid(1): None, sid(2): None}
        assert rig.readers[sid(0)].closed  # ListShards reported its ending sequence number

        parent_may_end.set()
        await eventually(lambda: rig.scheduler.held == [], "the parent's consumer ended")
        assert rig.table.leases[sid(0)].finished
        assert rig.table.leases[sid(0)].owner is None

        await rig.scheduler.lease_round()
        assert rig.scheduler.held == [sid(1), sid(2)]
        assert rig.owners() == {sid(0): None, sid(1): ME, sid(2): ME}
        assert not rig.readers[sid(1)].closed
        assert rig.sinks.archived(sid(0)) == [r.sequence_number for r in records]
        await rig.sync_only()

    arun(body())


def test_a_parent_missing_from_the_eventually_consistent_scan_is_confirmed_before_its_child_starts() -> None:
    async def body() -> None:
        table = FakeLeaseTable()
        table.put(Lease(sid(0), OTHER, 5))  # the parent, still being read by another worker
        table.put(Lease(sid(1), None, 0, parents=(sid(0),)))
        table.unseen = {sid(0)}  # the scan does not show the parent's lease yet
        rig = make_rig([shard(sid(0), closed=True), shard(sid(1), sid(0))], table=table)

        await rig.scheduler.lease_round()
        assert table.gets == [sid(0)]  # read again, strongly consistent
        assert rig.owners() == {sid(0): OTHER, sid(1): None}  # so the child waits

        table.put(Lease(sid(0), None, 6, Sentinel.SHARD_END))  # the parent reached SHARD_END
        await rig.scheduler.lease_round()
        assert rig.owners() == {sid(0): None, sid(1): ME}

        del table.leases[sid(0)]  # a deleted parent lets its child through as well
        table.put(Lease(sid(2), None, 0, parents=(sid(0),)))
        await rig.scheduler.lease_round()
        assert rig.owners()[sid(2)] == ME
        await rig.sync_only()

    arun(body())


def test_a_finished_parent_lease_is_deleted_once_its_children_started_and_never_comes_back() -> None:
    async def body() -> None:
        records = shard_records(samples("watch-a", 2), shard=sid(0))
        ended = ReadResult(records, 0, ended=True, child_shards=({"ShardId": sid(1)}, {"ShardId": sid(2)}))
        listed = [shard(sid(0), closed=True), shard(sid(1), sid(0)), shard(sid(2), sid(0))]
        rig = make_rig(listed, scripts={sid(0): [ended]})
        await rig.sync_only()
        await rig.scheduler.lease_round()
        await eventually(lambda: rig.scheduler.held == [], "the parent's consumer ended")

        await rig.scheduler.lease_round()  # takes the children: the parent's lease stays this round
        assert sorted(rig.table.leases) == [sid(0), sid(1), sid(2)]
        await rig.scheduler.lease_round()  # sees them started: deletes the parent's

        assert sorted(rig.table.leases) == [sid(1), sid(2)]
        assert ("delete", sid(0), None) in rig.table.writes
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="deleted") == 1
        assert rig.scheduler.held == [sid(1), sid(2)]
        await rig.sync_only()

        restarted = make_rig(listed, table=rig.table)  # a replica that never saw the parent
        await restarted.sync_only()
        assert sorted(rig.table.leases) == [sid(1), sid(2)]

    arun(body())


def test_the_expired_lease_of_a_dead_worker_is_taken_from_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(scheduler_module, "time", clock)  # the scheduler's own view of time only

    async def body() -> None:
        table = FakeLeaseTable()
        table.put(Lease(sid(0), "dead-worker", 7, str(SEQ0 + 5)))
        rig = make_rig([shard(sid(0))], table=table, failover_ms=10_000)
        await rig.sync_only()

        await rig.scheduler.lease_round()  # first sight of the counter: not expired yet
        clock.advance(10.0)
        await rig.scheduler.lease_round()  # stood still for exactly failover_ms: still not expired
        assert rig.owners() == {sid(0): "dead-worker"}
        assert rig.scheduler.held == []

        clock.advance(0.001)
        await rig.scheduler.lease_round()

        assert rig.owners() == {sid(0): ME}
        assert rig.scheduler.held == [sid(0)]
        (given,) = rig.given
        assert (given.owner, given.checkpoint) == (ME, str(SEQ0 + 5))
        await eventually(lambda: rig.readers[sid(0)].reads > 0, "taken after expiry: started at once")
        await rig.sync_only()

    arun(body())


def test_a_lease_whose_owner_still_renews_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(scheduler_module, "time", clock)

    async def body() -> None:
        table = FakeLeaseTable()
        table.put(Lease(sid(0), OTHER, 7))
        rig = make_rig([shard(sid(0))], table=table, failover_ms=10_000)
        await rig.sync_only()
        for _ in range(3):
            await rig.scheduler.lease_round()
            clock.advance(9.0)
            await table.renew(table.leases[sid(0)], OTHER)
        await rig.scheduler.lease_round()

        assert rig.owners() == {sid(0): OTHER}
        assert rig.scheduler.held == []

    arun(body())


def test_a_lease_taken_by_another_worker_is_lost_at_the_next_renewal() -> None:
    async def body() -> None:
        rig = make_rig([shard(sid(0))])
        await rig.sync_only()
        await rig.scheduler.lease_round()
        assert rig.scheduler.held == [sid(0)]

        rig.table.steal(sid(0))
        await rig.scheduler.lease_round()

        await eventually(lambda: rig.scheduler.held == [], "the consumer ended lease_lost")
        assert rig.owners() == {sid(0): OTHER}
        assert rig.table.writes[-1] == ("take", sid(0), OTHER)  # nothing written by us since
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="lost") == 1

    arun(body())


def test_a_lease_still_ours_after_a_restart_is_started_without_a_take() -> None:
    async def body() -> None:
        table = FakeLeaseTable()
        table.put(Lease(sid(0), ME, 4, str(SEQ0)))
        rig = make_rig([shard(sid(0))], table=table)
        await rig.sync_only()

        await rig.scheduler.lease_round()

        assert rig.scheduler.held == [sid(0)]
        assert [op for op, _, _ in table.writes] == []
        await rig.sync_only()
        assert rig.owners() == {sid(0): None}

    arun(body())


# --- run, shutdown, health -----------------------------------------------------------------------------


def test_run_consumes_until_stopped_then_releases_every_lease() -> None:
    async def body() -> None:
        rig = make_rig([shard(sid(n)) for n in range(3)])
        stop = asyncio.Event()
        assert not rig.scheduler.ready()

        task = asyncio.create_task(rig.scheduler.run(stop))
        await eventually(lambda: rig.scheduler.held == [sid(0), sid(1), sid(2)], "every shard taken")
        assert rig.scheduler.ready()
        assert metric(rig.metrics, "vitalstream_ready") == 1

        stop.set()
        await asyncio.wait_for(task, GUARD_S)

        assert not rig.scheduler.ready()
        assert metric(rig.metrics, "vitalstream_ready") == 0
        assert rig.owners() == {sid(0): None, sid(1): None, sid(2): None}
        assert rig.scheduler.held == []
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="released") == 3

    arun(body())


def test_live_follows_lease_rounds_and_a_failing_round_still_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(scheduler_module, "time", clock)

    async def body() -> None:
        rig = make_rig([shard(sid(0))])
        assert rig.scheduler.live()
        clock.advance(30.0)  # no round for max(3 rounds, 30 s): the lease loop is wedged
        assert not rig.scheduler.live()

        rig.table.failing["list_leases"] = throttle("Scan")
        stop = asyncio.Event()
        task = asyncio.create_task(rig.scheduler.run(stop))
        await eventually(rig.scheduler.live, "a lease round completed")
        assert metric(rig.metrics, "vitalstream_throttles_total", api="DynamoDB") >= 1
        assert rig.scheduler.held == []

        stop.set()
        await asyncio.wait_for(task, GUARD_S)

    arun(body())


def test_not_ready_until_the_table_and_the_first_shard_sync_are_done() -> None:
    async def body() -> None:
        rig = make_rig([shard(sid(0))])
        rig.kinesis.failing = throttle("ListShards")
        stop = asyncio.Event()

        with pytest.raises(type(rig.kinesis.failing)):
            await asyncio.wait_for(rig.scheduler.run(stop), GUARD_S)
        assert not rig.scheduler.ready()
        assert metric(rig.metrics, "vitalstream_ready") == 0

    arun(body())
