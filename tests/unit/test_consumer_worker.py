"""ShardConsumer: one shard's read → resident state → archive file → checkpoint loop, over the real core
and in-memory peers.

Every test drives the worker with a scripted reader; a worker reads again only once the records in hand
are done, so "the reader is drained" means every scripted batch went through the core and the sinks.
Files are cut by the records, by their age on the worker's wall clock (a fake one here, standing at
the records' arrival time until a test moves it) or by a flush at the end. Nothing here waits for a
duration to pass: waits are for conditions, under a guard.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.core import (
    Alert,
    AnomalyType,
    Detector,
    DeviceState,
    KinesisRecord,
    ProcessedRecord,
    RejectReason,
)
from service.core.archive_file import FilePolicy
from service.core.snapshot import decode_snapshot
from service.runtime.consumer.leases import Lease, Sentinel
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.ownership import HeldLease
from service.runtime.consumer.reader import ReadResult
from service.runtime.consumer.resident import ResidentShard
from service.runtime.consumer.worker import Ending, Pacing, ShardConsumer
from service.runtime.ports import LoadedStates
from service.runtime.sink_health import SinkHealth
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeSnapshots, FakeStateStore
from tests.unit.builders import SEQ0, SHARD, T0
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

PACING = Pacing(idle_s=0.01, min_interval_s=0.0, backoff_cap_s=0.01)
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
    down_for: int = 0  # uploads refused before the archive is back
    gate: threading.Event | None = None  # when set: every upload waits until the gate opens

    def write_file(
        self, shard_id: str, first_sequence: str, arrival_ms: int, records: Sequence[ProcessedRecord]
    ) -> str | None:
        if self.gate is not None:
            self.gate.wait(GUARD_S)
        self.down = self.down_for > 0
        self.down_for = max(self.down_for - 1, 0)
        key = super().write_file(shard_id, first_sequence, arrival_ms, records)
        if records:
            self.journal.append(f"archive:{records[-1].sequence_number}")
        return key


@dataclass
class JournalSnapshots(FakeSnapshots):
    journal: list[str] = field(default_factory=list)

    def put(self, shard_id: str, sequence: str, blob: bytes) -> str:
        key = super().put(shard_id, sequence, blob)
        self.journal.append(f"snapshot:{sequence}")
        return key


@dataclass
class JournalStates(FakeStateStore):
    journal: list[str] = field(default_factory=list)
    down_for: int = 0  # loads that fail before the table is back
    refuse_for: int = 0  # saves in which ``refuse_writes`` devices fail before they are accepted
    loads: list[list[str]] = field(default_factory=list)
    saves: list[list[str]] = field(default_factory=list)

    def load(self, device_ids: Iterable[str]) -> LoadedStates:
        self.down = self.down_for > 0
        self.down_for = max(self.down_for - 1, 0)
        self.loads.append(sorted(device_ids))
        return super().load(list(device_ids))

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        self.saves.append(sorted(states))
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
    wall: FakeClock

    async def run_until_drained(self) -> Ending:
        """Run until every scripted read is done, then ask for shutdown (SIGTERM) and return the ending."""
        task = asyncio.create_task(self.consumer.run())
        await asyncio.wait_for(self.reader.drained.wait(), GUARD_S)
        self.consumer.request_shutdown()
        return await asyncio.wait_for(task, GUARD_S)

    def stored(self) -> Lease:
        return self.table.leases[SHARD]

    @property
    def archive(self) -> JournalArchive:
        assert isinstance(self.sinks.archive, JournalArchive)
        return self.sinks.archive

    @property
    def states(self) -> JournalStates:
        assert isinstance(self.sinks.states, JournalStates)
        return self.sinks.states


def make_rig(
    steps: Iterable[ReadResult | BaseException] = (),
    *,
    clock: FakeClock | None = None,
    lease: Lease | None = None,
    policy: FilePolicy | None = None,
    sinks: Sinks | None = None,
    health: SinkHealth | None = None,
) -> Rig:
    journal: list[str] = []
    table = FakeLeaseTable(journal=journal)
    lease = table.put(lease or Lease(SHARD, ME, 3, Sentinel.TRIM_HORIZON))
    held = HeldLease(lease, table, ME, FAILOVER_MS, clock=clock or time.monotonic)
    sinks = sinks or Sinks()
    sinks.archive = JournalArchive(objects=sinks.archive.objects, journal=journal)
    sinks.snapshots = JournalSnapshots(objects=sinks.snapshots.objects, journal=journal)
    sinks.states = JournalStates(states=sinks.states.states, journal=journal)
    sinks.alerts = RecoveringAlerts(journal=journal)
    sinks.policy = policy or FilePolicy()
    reader = FakeReader(steps)
    metrics = ConsumerMetrics()
    children: list[tuple[dict[str, Any], ...]] = []
    wall = FakeClock(T0 / 1000)  # the records arrived at T0: no file is idle until the test says so
    shard = ResidentShard(SHARD, sinks.resident(), lease.prepared_end)
    consumer = ShardConsumer(
        held,
        reader,
        shard,
        metrics,
        PACING,
        on_children=children.append,
        wall_ms=lambda: int(wall() * 1000),
        health=health,
    )
    return Rig(table, held, reader, sinks, metrics, consumer, journal, children, wall)


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


def after_steal(table: FakeLeaseTable) -> int:
    """Index of the first lease-table write after another worker took the lease."""
    return 1 + next(i for i, (op, _, owner) in enumerate(table.writes) if op == "take" and owner != ME)


def archived(rig: Rig) -> list[str]:
    return [r.sequence_number for records in rig.archive.objects.values() for r in records]


# --- files and checkpoints -----------------------------------------------------------------------------


def test_batches_fill_one_file_which_is_uploaded_with_its_snapshot_before_the_checkpoint() -> None:
    async def body() -> None:
        first, second = three_devices(3), three_devices(2, SEQ0 + 9, device_seq=3)
        rig = make_rig([batch(first, behind=5_000), batch(second)])

        ending = await rig.run_until_drained()

        assert ending is Ending.SHUTDOWN_REQUESTED
        last = second[-1].sequence_number
        assert list(rig.archive.objects) == [f"{SHARD}/{first[0].sequence_number}"]
        assert archived(rig) == seqs(first + second)
        # the file's span is prepared, the file and the snapshot go up, then the checkpoint names the
        # snapshot; only then may the devices' items be written (they were first seen in this file)
        assert rig.journal == [
            "prepare:worker-me",
            f"archive:{last}",
            f"snapshot:{last}",
            f"checkpoint:{last}",
            "state",
            "release:None",
        ]
        stored = rig.stored()
        assert (stored.checkpoint, stored.snapshot, stored.owner) == (last, f"{SHARD}/{last}", None)
        assert stored.batch == f"{first[0].sequence_number}-{last}"
        shard, sequence, states = decode_snapshot(rig.sinks.snapshots.objects[f"{SHARD}/{last}"])
        assert (shard, sequence, sorted(states)) == (SHARD, last, ["watch-a", "watch-b", "watch-c"])
        assert states["watch-a"].last_sequence == second[-3].sequence_number
        assert set(rig.states.latest) == {"watch-a", "watch-b", "watch-c"}
        assert rig.states.loads == [["watch-a", "watch-b", "watch-c"]]  # read once, when first seen
        assert metric(rig.metrics, "vitalstream_records_total", outcome="processed") == 15
        assert metric(rig.metrics, "vitalstream_checkpoints_total") == 1
        assert metric(rig.metrics, "vitalstream_archive_files_total") == 1
        assert rig.reader.close_calls == 1

    arun(body())


def test_files_are_cut_by_record_count_inside_a_batch_and_each_is_checkpointed() -> None:
    async def body() -> None:
        records = three_devices(5)  # 15 records: files of 4, 4, 4, then the flush takes the last 3
        rig = make_rig([batch(records)], policy=FilePolicy(max_records=4))

        await rig.run_until_drained()

        assert rig.table.checkpoints() == [records[i].sequence_number for i in (3, 7, 11, 14)]
        assert list(rig.archive.objects) == [f"{SHARD}/{records[i].sequence_number}" for i in (0, 4, 8, 12)]
        assert archived(rig) == seqs(records)
        # each snapshot holds the states as of its file's last record, not of the whole batch
        _, _, states = decode_snapshot(rig.sinks.snapshots.objects[f"{SHARD}/{records[3].sequence_number}"])
        assert states["watch-a"].last_sequence == records[3].sequence_number
        assert states["watch-c"].last_sequence == records[2].sequence_number

    arun(body())


def test_an_idle_shards_file_is_cut_when_it_reaches_its_age() -> None:
    async def body() -> None:
        records = three_devices(2)
        rig = make_rig([batch(records)], policy=FilePolicy(max_age_ms=60_000))
        task = asyncio.create_task(rig.consumer.run())
        await asyncio.wait_for(rig.reader.drained.wait(), GUARD_S)
        assert rig.table.checkpoints() == []  # 0 s old: the file stays open

        rig.wall.advance(60.0)

        await eventually(lambda: rig.table.checkpoints() == [records[-1].sequence_number], "an age cut")
        rig.consumer.request_shutdown()
        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.table.checkpoints() == [records[-1].sequence_number]  # nothing left to flush

    arun(body())


def test_device_items_are_coalesced_one_write_per_device_per_interval_and_at_once_on_a_change() -> None:
    async def body() -> None:
        sinks = Sinks(latest_interval_ms=60_000)
        calm = three_devices(2)
        # watch-b is at rest at 130 bpm from its 3rd sample on: tachycardia opens after 30 s
        rising = shard_records(
            interleaved(samples("watch-a", 12, first_seq=2), samples("watch-b", 12, 130, first_seq=2)),
            SEQ0 + 6,
        )
        rig = make_rig([batch(calm), batch(rising)], policy=FilePolicy(max_records=6), sinks=sinks)

        await rig.run_until_drained()

        # the first file's checkpoint makes every device writable, but a quiet device's first write
        # waits for its own phase within the interval (never reached here: no burst of every device at
        # once); watch-b, whose tachycardia opened, is written at once, and the shutdown's flush
        # writes what is still pending
        # writes what is still pending (watch-b too, unless its at-once write, made in the background
        # while the shard processed on, already held its last record: a scheduling detail)
        first, flush = rig.states.saves
        assert first == ["watch-b"]
        assert flush in (["watch-a", "watch-b", "watch-c"], ["watch-a", "watch-c"])
        assert rig.states.latest["watch-b"].anomalies == (AnomalyType.TACHYCARDIA,)
        assert rig.states.latest["watch-b"].sequence_number == rising[-1].sequence_number
        assert rig.states.latest["watch-a"].sequence_number == rising[-2].sequence_number
        assert archived(rig) == seqs(calm + rising)

    arun(body())


def test_a_new_owner_restores_the_snapshot_and_continues_an_episode_without_a_second_alert() -> None:
    async def body() -> None:
        episode = shard_records(samples("watch-b", 16, heart_rate=130))  # 75 s at 130 bpm
        first = make_rig([batch(episode[:10])], policy=FilePolicy(max_records=10))
        await first.run_until_drained()
        assert [a.deviceId for a in first.sinks.alerts.published.values()] == ["watch-b"]

        # the next owner starts from the lease as the first left it, with the same sinks
        lease = first.stored()
        sinks = first.sinks
        taken = Lease(SHARD, ME, lease.counter, lease.checkpoint, batch=lease.batch, snapshot=lease.snapshot)
        second = make_rig([batch(episode[10:])], lease=taken, sinks=sinks)
        await second.run_until_drained()

        assert second.sinks.alerts.published == {}  # RecoveringAlerts is new: nothing published again
        assert second.states.loads == []  # every device came from the snapshot
        assert archived(second) == seqs(episode)  # the two owners' files, in the shared archive

    arun(body())


def test_a_prepared_file_is_cut_again_at_the_same_end_by_the_next_owner() -> None:
    async def body() -> None:
        records = three_devices(4)
        # an owner prepared a file of records 0..7, uploaded it and died before the checkpoint
        span = f"{records[0].sequence_number}-{records[7].sequence_number}"
        prepared = Lease(SHARD, ME, 3, Sentinel.TRIM_HORIZON, batch=span)
        rig = make_rig([batch(records)], lease=prepared)

        await rig.run_until_drained()

        assert rig.table.checkpoints() == [records[7].sequence_number, records[-1].sequence_number]
        assert list(rig.archive.objects) == [f"{SHARD}/{records[i].sequence_number}" for i in (0, 8)]

    arun(body())


def test_alert_sink_failure_reruns_the_records_and_archives_each_once() -> None:
    async def body() -> None:
        # watch-b is at rest at 130 bpm for 45 s: a tachycardia alert, which SNS refuses three times
        records = shard_records(interleaved(samples("watch-a", 10), samples("watch-b", 10, heart_rate=130)))
        rig = make_rig([batch(records)])
        alerts = rig.sinks.alerts
        assert isinstance(alerts, RecoveringAlerts)
        alerts.refuse_devices, alerts.refuse_for = {"watch-b"}, 3

        await rig.run_until_drained()

        assert rig.journal.count("alerts-refused") == 3
        assert archived(rig) == seqs(records)  # every record exactly once, in shard order
        assert [a.deviceId for a in alerts.published.values()] == ["watch-b"]
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert metric(rig.metrics, "vitalstream_sink_errors_total", sink="alerts", code="PartialFailure") == 3
        assert metric(rig.metrics, "vitalstream_records_total", outcome="retried") > 0

    arun(body())


def test_state_table_outage_at_first_sight_holds_the_records_then_every_one_is_archived_once() -> None:
    async def body() -> None:
        records = three_devices(4)
        rig = make_rig([batch(records)])
        rig.states.down_for = 3

        await rig.run_until_drained()

        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert archived(rig) == seqs(records)
        assert set(rig.states.latest) == {"watch-a", "watch-b", "watch-c"}
        assert (
            metric(
                rig.metrics,
                "vitalstream_sink_errors_total",
                sink="device_state",
                code="EndpointConnectionError",
            )
            == 3
        )

    arun(body())


def test_a_refused_item_write_stays_pending_and_lands_later() -> None:
    async def body() -> None:
        records = three_devices(4)
        rig = make_rig([batch(records)])
        rig.states.refuse_writes, rig.states.refuse_for = {"watch-b"}, 2

        await rig.run_until_drained()

        assert rig.journal.count("state-refused") == 2
        assert rig.table.checkpoints() == [records[-1].sequence_number]  # item writes never hold it
        assert rig.states.latest["watch-b"].sequence_number == records[-2].sequence_number
        assert archived(rig) == seqs(records)

    arun(body())


def test_the_next_batch_runs_while_the_cut_file_is_still_going_up() -> None:
    async def body() -> None:
        first, second = three_devices(2), three_devices(2, SEQ0 + 6, device_seq=2)
        rig = make_rig([batch(first), batch(second)], policy=FilePolicy(max_records=6))
        rig.archive.gate = threading.Event()
        task = asyncio.create_task(rig.consumer.run())
        processed = lambda: metric(rig.metrics, "vitalstream_records_total", outcome="processed")  # noqa: E731

        # the first file is cut and its upload hangs: the second batch is read and run meanwhile
        await eventually(lambda: processed() == 12, "the second batch processed during the upload")
        assert rig.table.checkpoints() == []  # nothing is checkpointed before its file is up
        assert rig.archive.objects == {}

        rig.archive.gate.set()

        await eventually(lambda: len(rig.table.checkpoints()) == 2, "both files committed, in order")
        rig.consumer.request_shutdown()
        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.table.checkpoints() == [first[-1].sequence_number, second[-1].sequence_number]
        assert list(rig.archive.objects) == [f"{SHARD}/{r[0].sequence_number}" for r in (first, second)]
        assert archived(rig) == seqs(first + second)

    arun(body())


def test_an_archive_outage_holds_the_checkpoint_until_the_file_is_up() -> None:
    async def body() -> None:
        records = three_devices(3)
        rig = make_rig([batch(records)], policy=FilePolicy(max_records=6))
        rig.archive.down_for = 2

        await rig.run_until_drained()

        assert rig.table.checkpoints() == [records[5].sequence_number, records[-1].sequence_number]
        assert archived(rig) == seqs(records)
        assert (
            metric(rig.metrics, "vitalstream_sink_errors_total", sink="archive", code="ServiceUnavailable")
            == 2
        )

    arun(body())


def test_a_poison_record_goes_to_the_dead_letters_and_the_shard_moves_on() -> None:
    async def body() -> None:
        good = samples("watch-a", 2)
        records = shard_records([good[0], b"{not json", good[1]])
        rig = make_rig([batch(records)])

        await rig.run_until_drained()

        assert archived(rig) == [records[0].sequence_number, records[2].sequence_number]
        (reject,) = rig.sinks.dead_letters.stored.values()
        assert reject.sequence_number == records[1].sequence_number
        assert reject.data == b"{not json"
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert metric(rig.metrics, "vitalstream_dead_letters_total", reason="invalid_json") == 1
        assert metric(rig.metrics, "vitalstream_records_total", outcome="rejected") == 1

    arun(body())


def test_a_record_whose_processing_raises_is_dead_lettered_counted_and_logged_without_its_payload(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    observe = Detector.observe

    def broken(self: Detector, state: DeviceState, device_id: str, *args: Any) -> Any:
        if device_id == "watch-b":
            raise RuntimeError("detector bug")
        return observe(self, state, device_id, *args)

    monkeypatch.setattr(Detector, "observe", broken)

    async def body() -> None:
        good = samples("watch-a", 2)
        records = shard_records([good[0], *samples("watch-b", 1), good[1]])
        rig = make_rig([batch(records)])

        with caplog.at_level(logging.ERROR, logger="service.runtime.consumer.step_metrics"):
            await rig.run_until_drained()

        (reject,) = rig.sinks.dead_letters.stored.values()
        assert reject.reason is RejectReason.PROCESSING_ERROR
        assert reject.sequence_number == records[1].sequence_number
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert metric(rig.metrics, "vitalstream_dead_letters_total", reason="processing_error") == 1
        (line,) = [r for r in caplog.records if r.getMessage() == "processing_error"]
        assert vars(line)["shard_id"] == SHARD
        assert vars(line)["sequence_number"] == records[1].sequence_number
        assert vars(line)["detail"] == "RuntimeError: detector bug"
        assert "sub_sequence_number" in vars(line)
        assert "watch-b" not in str(vars(line))  # the payload stays in the dead-letter store

    arun(body())


def test_get_records_throttling_backs_off_then_recovers() -> None:
    async def body() -> None:
        records = three_devices(2)
        rig = make_rig([throttle(), throttle(), batch(records)])

        await rig.run_until_drained()

        assert metric(rig.metrics, "vitalstream_throttles_total", api="GetRecords") == 2
        assert archived(rig) == seqs(records)
        assert rig.table.checkpoints() == [records[-1].sequence_number]

    arun(body())


def test_a_throttled_checkpoint_is_written_again_before_anything_new_is_read() -> None:
    async def body() -> None:
        records = three_devices(2)
        rig = make_rig([batch(records)], policy=FilePolicy(max_records=3))
        rig.table.failing["checkpoint"] = throttle("UpdateItem")
        task = asyncio.create_task(rig.consumer.run())
        throttled = lambda: metric(rig.metrics, "vitalstream_throttles_total", api="DynamoDB") >= 2  # noqa: E731
        await eventually(throttled, "the checkpoint was refused twice")
        assert rig.reader.reads == 1  # the cut file's checkpoint comes first

        rig.table.failing.clear()

        await asyncio.wait_for(rig.reader.drained.wait(), GUARD_S)
        rig.consumer.request_shutdown()
        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.table.checkpoints() == [records[2].sequence_number, records[-1].sequence_number]
        assert archived(rig) == seqs(records)

    arun(body())


# --- endings -------------------------------------------------------------------------------------------


def test_shard_end_flushes_the_file_writes_every_item_then_checkpoints_shard_end() -> None:
    async def body() -> None:
        first, last = three_devices(2), three_devices(1, SEQ0 + 6, device_seq=2)
        children = ({"ShardId": "shardId-000000000001"}, {"ShardId": "shardId-000000000002"})
        ended = ReadResult(last, 0, ended=True, child_shards=children)
        rig = make_rig([batch(first, behind=100), ended])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.SHARD_ENDED
        assert archived(rig) == seqs(first + last)
        assert rig.table.checkpoints() == [last[-1].sequence_number, Sentinel.SHARD_END]
        # the children's owners read their devices from the table: every item is there first
        assert rig.journal[-3:] == ["state", "checkpoint:SHARD_END", "release:None"]
        assert {d: s.last_sequence for d, s in rig.states.states.items()} == {
            "watch-a": last[0].sequence_number,
            "watch-b": last[1].sequence_number,
            "watch-c": last[2].sequence_number,
        }
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


def test_lease_lost_at_renewal_stops_and_writes_nothing_more() -> None:
    async def body() -> None:
        first = three_devices(1)
        second = three_devices(1, SEQ0 + 3, device_seq=1)
        rig = make_rig([batch(first)], policy=FilePolicy(max_records=3))

        async def stolen_then_renewed() -> ReadResult:
            rig.table.steal(SHARD)  # another worker's take bumps the counter
            assert await rig.held.renew() is False  # the lease loop's next renewal finds out
            return batch(second)

        rig.reader.steps.extend([stolen_then_renewed, batch(three_devices(1, SEQ0 + 6, device_seq=2))])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.LEASE_LOST
        assert archived(rig) == seqs(first)
        assert rig.table.writes[after_steal(rig.table) :] == []  # no checkpoint, no release
        assert rig.stored().owner != ME
        assert rig.stored().checkpoint == first[-1].sequence_number
        assert rig.reader.reads == 2
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="lost") == 1

    arun(body())


def test_a_lease_lost_before_the_file_is_prepared_uploads_nothing() -> None:
    async def body() -> None:
        first = three_devices(1)
        second = three_devices(1, SEQ0 + 3, device_seq=1)
        rig = make_rig([batch(first)], policy=FilePolicy(max_records=3))

        async def stolen() -> ReadResult:
            # the first file commits in the background while the shard reads on: the steal comes after
            # its checkpoint, so it is the second file's prepare that finds the lease gone
            await eventually(lambda: rig.stored().checkpoint == first[-1].sequence_number, "first commit")
            rig.table.steal(SHARD)
            return batch(second)

        rig.reader.steps.extend([stolen, batch(three_devices(1, SEQ0 + 6, device_seq=2))])

        ending = await asyncio.wait_for(rig.consumer.run(), GUARD_S)

        assert ending is Ending.LEASE_LOST
        # the second file's prepare finds the lease moved: nothing of it is uploaded or checkpointed
        assert archived(rig) == seqs(first)
        assert rig.table.writes[after_steal(rig.table) :] == []
        assert rig.stored().checkpoint == first[-1].sequence_number

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


def test_a_handoff_request_flushes_checkpoints_and_hands_the_lease_over() -> None:
    async def body() -> None:
        records = three_devices(2)
        rig = make_rig([batch(records)])
        task = asyncio.create_task(rig.consumer.run())
        await asyncio.wait_for(rig.reader.drained.wait(), GUARD_S)

        rig.held.lease = await rig.table.request_handoff(rig.held.lease, "worker-thief") or rig.held.lease

        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert rig.table.checkpoints() == [records[-1].sequence_number]
        assert rig.stored().owner == "worker-thief"
        assert metric(rig.metrics, "vitalstream_lease_events_total", event="handed_over") == 1

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
        assert metric(rig.metrics, "vitalstream_records_total", outcome="processed") == 0

        rig.table.failing["renew"] = throttle("UpdateItem")
        with pytest.raises(ClientError):
            await rig.held.renew()
        await asyncio.sleep(0.05)
        assert rig.held.fenced()
        assert metric(rig.metrics, "vitalstream_records_total", outcome="processed") == 0

        rig.table.failing.clear()
        assert await rig.held.renew() is True
        assert not rig.held.fenced()
        await eventually(
            lambda: metric(rig.metrics, "vitalstream_records_total", outcome="processed") == 3,
            "the batch ran after the renewal",
        )

        rig.consumer.request_shutdown()
        assert await asyncio.wait_for(task, GUARD_S) is Ending.SHUTDOWN_REQUESTED
        assert archived(rig) == seqs(records)

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
        assert archived(rig) == []
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
        assert archived(rig) == []

    arun(body())
