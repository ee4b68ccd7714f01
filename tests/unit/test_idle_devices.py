"""Idle devices leave a shard's resident state and its snapshots, with their latest state in the device
table; one that returns is read back once and goes on where it was. Decided from arrival times only,
so an owner replaying from a checkpoint drops the same devices and writes the same snapshots."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

import pytest

from service.core import DeviceState, KinesisRecord, iso_ms
from service.core.archive_file import ClosedFile, FilePolicy
from service.core.residency import idle_devices
from service.core.snapshot import decode_resident, decode_snapshot, encode_snapshot
from service.runtime.consumer.resident import ResidentShard
from service.runtime.ports import LoadedStates
from tests.fakes import FakeStateStore
from tests.unit.builders import SEQ0, SHARD, T0, telemetry
from tests.unit.consumer_fakes import Sinks

HOUR = 3_600_000
IDLE = HOUR
POLICY = FilePolicy(max_records=1_000, max_bytes=1_000_000, max_age_ms=60_000)


@dataclass
class CountingStates(FakeStateStore):
    """The device table, counting the devices each ``load`` asked for."""

    loads: list[str] = field(default_factory=list)

    def load(self, device_ids: Collection[str]) -> LoadedStates:
        self.loads.extend(device_ids)
        return super().load(device_ids)


@dataclass
class Stream:
    """One shard's records: consecutive sequence numbers, each with its own arrival time."""

    records: list[KinesisRecord] = field(default_factory=list)

    def send(self, device: str, arrival_ms: int, seq: int) -> KinesisRecord:
        payload = telemetry(deviceId=device, timestamp=iso_ms(arrival_ms - 500), seq=seq)
        kinesis = KinesisRecord(
            json.dumps(payload).encode(), SHARD, str(SEQ0 + len(self.records)), arrival_ms
        )
        self.records.append(kinesis)
        return kinesis


def sinks(idle_evict_ms: int = IDLE) -> Sinks:
    return Sinks(states=CountingStates(), policy=POLICY, idle_evict_ms=idle_evict_ms)


def feed(shard: ResidentShard, records: list[KinesisRecord], now_ms: int = T0) -> list[ClosedFile]:
    """Run ``records`` through ``shard`` as the worker does; the files cut on the way (not committed)."""
    cut: list[ClosedFile] = []
    while records:
        step = shard.process(records, now_ms, frozenset())
        assert not step.failures
        records = records[step.consumed :]
        if step.closed is not None:
            cut.append(step.closed)
    return cut


def commit(shard: ResidentShard, closed: ClosedFile) -> int:
    shard.upload(closed)
    return shard.committed(closed)


def devices_in(closed: ClosedFile) -> list[str]:
    return sorted(decode_snapshot(closed.snapshot)[2])


def test_a_device_silent_past_the_idle_period_leaves_the_next_snapshot_with_its_state_in_the_table() -> None:
    s, stream = sinks(), Stream()
    shard = ResidentShard(SHARD, s.resident())
    first = feed(shard, [stream.send("quiet", T0, 0), stream.send("busy", T0, 0)])
    later = feed(
        shard, [stream.send("busy", T0 + 2 * HOUR, 1), stream.send("busy", T0 + 2 * HOUR + 60_000, 2)]
    )
    assert first == []
    assert len(later) == 2  # the first file is cut by the second, then the second
    before, after = later
    held_before = decode_snapshot(before.snapshot)[2]["quiet"]

    assert devices_in(before) == ["busy", "quiet"]  # 0 h of silence by its newest record
    assert devices_in(after) == ["busy"]  # 2 h by the newest record of the file cut after

    assert commit(shard, before) == 0
    assert "quiet" not in s.states.states  # nothing was due: the device table has not got it yet
    assert commit(shard, after) == 1
    assert s.states.states["quiet"] == held_before  # written before the snapshot that lacks it
    assert s.states.latest["quiet"].device_id == "quiet"
    assert shard.devices == 1


def test_a_device_that_returns_is_read_back_once_from_the_table_and_goes_on() -> None:
    s, stream = sinks(), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("quiet", T0, 0), stream.send("busy", T0 + 2 * HOUR, 1)])
    (gone,) = feed(shard, [stream.send("busy", T0 + 2 * HOUR + 60_000, 2)])
    commit(shard, gone)
    assert "quiet" not in decode_snapshot(gone.snapshot)[2]
    loads_before = list(s.states.loads)

    back = stream.send("quiet", T0 + 2 * HOUR + 61_000, 0)  # its seq 0 again: a duplicate
    step = shard.process([back, stream.send("quiet", T0 + 2 * HOUR + 62_000, 1)], T0, frozenset())
    again = shard.process([stream.send("quiet", T0 + 2 * HOUR + 63_000, 2)], T0, frozenset())

    assert s.states.loads[len(loads_before) :] == ["quiet"]  # read once, not per batch
    assert step.result.duplicates == 1  # its restored state remembers seq 0
    assert [r.device_id for r in step.result.processed] == ["quiet"]
    assert len(again.result.processed) == 1
    assert shard.devices == 2


def test_a_device_back_before_its_departure_is_written_continues_from_the_departing_state() -> None:
    s, stream = sinks(), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("quiet", T0, 0), stream.send("busy", T0 + 2 * HOUR, 1)])
    (gone,) = feed(shard, [stream.send("busy", T0 + 2 * HOUR + 60_000, 2)])  # cut, not uploaded yet
    assert devices_in(gone) == ["busy"]
    loads_before = len(s.states.loads)

    step = shard.process([stream.send("quiet", T0 + 2 * HOUR + 61_000, 0)], T0, frozenset())

    assert s.states.loads[loads_before:] == []  # the table may not have it yet: never read from there
    assert step.result.duplicates == 1
    assert commit(shard, gone) == 1
    (held,) = feed(shard, [stream.send("busy", T0 + 2 * HOUR + 130_000, 3)])
    assert devices_in(held) == ["busy", "quiet"]


def test_an_owner_replaying_from_a_checkpoint_drops_the_same_devices_and_writes_the_same_snapshots() -> None:
    stream = Stream()
    batches = [
        [stream.send(f"dev-{i}", T0 + i * 1_000, 0) for i in range(4)],
        [stream.send("dev-0", T0 + HOUR + 30_000, 1)],
        [stream.send("dev-1", T0 + HOUR + 95_000, 1)],
        [stream.send("dev-0", T0 + 3 * HOUR, 2), stream.send("dev-9", T0 + 3 * HOUR + 61_000, 0)],
    ]
    s1 = sinks()
    first = ResidentShard(SHARD, s1.resident())
    cut: list[ClosedFile] = []
    table_at_checkpoint: dict[str, DeviceState] = {}
    for records in batches:
        for closed in feed(first, records, now_ms=T0):
            commit(first, closed)
            cut.append(closed)
            if len(cut) == 1:
                table_at_checkpoint = {d: state.clone() for d, state in s1.states.states.items()}
    checkpoint = cut[0]

    s2 = sinks()  # a new owner after the first checkpoint: its snapshot, the table as it was then
    s2.snapshots.objects, s2.states.states = dict(s1.snapshots.objects), table_at_checkpoint
    second = ResidentShard(SHARD, s2.resident())
    second.restore(f"{SHARD}/{checkpoint.last}")
    replay = [r for r in stream.records if r.seq_int > int(checkpoint.last)]
    again = []
    for closed in feed(second, replay, now_ms=T0 + 5 * HOUR):  # another wall clock: it must not matter
        commit(second, closed)
        again.append(closed)

    assert [c.snapshot for c in again] == [c.snapshot for c in cut[1:]]
    assert [devices_in(c) for c in cut] == [
        ["dev-0", "dev-1", "dev-2", "dev-3"],
        ["dev-0"],  # the others: an hour of silence by dev-0's record, the newest of the file
        ["dev-0", "dev-1"],  # dev-1 came back (read from the table)
        ["dev-0"],  # and left again
    ]


def test_with_no_idle_period_every_device_stays() -> None:
    s, stream = sinks(idle_evict_ms=0), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("quiet", T0, 0), stream.send("busy", T0 + 30 * 24 * HOUR, 1)])
    (closed,) = feed(shard, [stream.send("busy", T0 + 30 * 24 * HOUR + 60_000, 2)])

    assert devices_in(closed) == ["busy", "quiet"]
    assert commit(shard, closed) == 0


@pytest.mark.parametrize(
    ("arrivals", "in_file", "idle"),
    [
        ({"a": 0, "b": HOUR - 1, "c": HOUR}, (), ["a"]),  # exactly the idle period leaves
        ({"a": 0, "b": 0}, ("a",), ["b"]),  # a device of the file being cut never leaves at its cut
        ({"a": 2 * HOUR}, (), []),  # arrived after the file's newest record (another file's)
    ],
)
def test_idle_devices_by_arrival_time(
    arrivals: dict[str, int], in_file: tuple[str, ...], idle: list[str]
) -> None:
    assert idle_devices(arrivals, HOUR, IDLE, in_file) == idle
    assert idle_devices(arrivals, HOUR, 0, in_file) == []


def test_a_snapshot_keeps_arrivals_and_one_without_them_restores_event_time() -> None:
    s, stream = sinks(), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("a", T0 + 5_000, 0)])
    (closed,) = feed(shard, [stream.send("a", T0 + 70_000, 1)])
    restored = decode_resident(closed.snapshot)
    assert restored.arrivals == {"a": T0 + 5_000}

    older = decode_resident(encode_snapshot(SHARD, closed.last, restored.states))  # no arrivals
    assert older.arrivals == {"a": restored.states["a"].last_event_ms}


def test_a_device_that_left_and_came_back_waits_for_a_snapshot_holding_it_before_its_item_is_written() -> (
    None
):
    s, stream = sinks(), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("quiet", T0, 0), stream.send("busy", T0, 0)])
    older, gone = feed(
        shard, [stream.send("busy", T0 + 2 * HOUR, 1), stream.send("busy", T0 + 2 * HOUR + 60_000, 2)]
    )
    feed(shard, [stream.send("quiet", T0 + 2 * HOUR + 61_000, 1)])  # back, before either commit

    commit(shard, older)  # its snapshot holds "quiet" as it was before it left: no cover for it now
    shard.write_latest(T0, flush=True)
    assert "quiet" not in s.states.states

    commit(shard, gone)  # the departure write: the state it left with
    shard.write_latest(T0, flush=True)
    assert s.states.states["quiet"].device_seq == 0

    (holding,) = feed(shard, [stream.send("busy", T0 + 2 * HOUR + 125_000, 3)])
    commit(shard, holding)
    shard.write_latest(T0, flush=True)
    assert s.states.states["quiet"].device_seq == 1


def test_a_device_with_a_record_in_the_file_being_cut_stays_whatever_the_idle_period() -> None:
    s, stream = sinks(idle_evict_ms=10_000), Stream()
    shard = ResidentShard(SHARD, s.resident())
    feed(shard, [stream.send("early", T0, 0), stream.send("late", T0 + 30_000, 0)])
    (first,) = feed(shard, [stream.send("late", T0 + 61_000, 1)])
    (second,) = feed(shard, [stream.send("late", T0 + 122_000, 2)])

    assert devices_in(first) == ["early", "late"]  # 30 s before the newest record, but in this file
    assert devices_in(second) == ["late"]


def test_the_consumer_counts_the_devices_that_left_at_each_checkpoint() -> None:
    from tests.unit.consumer_fakes import batch  # noqa: PLC0415 - the worker's rig, only here
    from tests.unit.test_consumer_worker import arun, make_rig, metric  # noqa: PLC0415

    async def body() -> None:
        stream = Stream()
        steps = [
            batch([stream.send("quiet", T0, 0), stream.send("busy", T0, 0)]),
            batch([stream.send("busy", T0 + 2 * HOUR, 1)]),
            batch([stream.send("busy", T0 + 2 * HOUR + 60_000, 2)]),
        ]
        rig = make_rig(steps, policy=POLICY, sinks=Sinks(idle_evict_ms=IDLE))

        await rig.run_until_drained()

        last = stream.records[-1].sequence_number
        assert metric(rig.metrics, "vitalstream_devices_evicted_total") == 1
        assert devices_in_key(rig.sinks.snapshots.objects, f"{SHARD}/{last}") == ["busy"]
        assert rig.states.states["quiet"].device_seq == 0  # in the table before that snapshot

    arun(body())


def devices_in_key(objects: dict[str, bytes], key: str) -> list[str]:
    return sorted(decode_snapshot(objects[key])[2])
