"""``WindowProcessor`` with in-memory ports: device states in the window state, the table once per window."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.core import DEFAULT_CONFIG, Detector, DeviceState, ProcessedRecord, StateFormatError
from service.core.window_handoff import Handoff, HashRange, decode_handoff, encode_handoff
from service.core.window_state import WindowState, decode_window_state, encode_window_state
from service.runtime.pipeline import Pipeline
from service.runtime.ports import LoadedStates, ShardLine
from service.runtime.window import (
    DUE_KEY,
    STATE_KEY,
    WindowCommitError,
    WindowOutcome,
    WindowProcessor,
    writes_now,
)
from service.runtime.window_handoffs import FlushError
from tests.events import SHARD_ID, T0_MS, episode, interleave, kinesis_event, sample, sequence, tail
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeHandoffs, FakeStateStore

NOW_MS = T0_MS + 120_000
WINDOW = {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:02:00Z"}
NEXT_WINDOW = {"start": "2026-03-01T10:02:00Z", "end": "2026-03-01T10:04:00Z"}
LATER_WINDOW = {"start": "2026-03-01T10:06:00Z", "end": "2026-03-01T10:08:00Z"}


@dataclass
class CountingStates(FakeStateStore):
    """The fake table, noting every device each load asked for and each save wrote."""

    loads: list[list[str]] = field(default_factory=list)
    saves: list[list[str]] = field(default_factory=list)

    def load(self, device_ids: Collection[str]) -> LoadedStates:
        self.loads.append(sorted(device_ids))
        return super().load(device_ids)

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        self.saves.append(sorted(states))
        return super().save(states, latest)


@dataclass
class Sinks:
    states: CountingStates = field(default_factory=CountingStates)
    archive: FakeArchive = field(default_factory=FakeArchive)
    alerts: FakeAlertPublisher = field(default_factory=FakeAlertPublisher)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    handoffs: FakeHandoffs = field(default_factory=FakeHandoffs)

    def processor(self, budget_bytes: int = 900_000, writes: int = 100) -> WindowProcessor:
        handoffs = self.handoffs.handoffs()
        pipeline = Pipeline(
            Detector(DEFAULT_CONFIG),
            self.states,
            self.archive,
            self.alerts,
            self.dead_letters,
            handoffs=handoffs,
        )
        return WindowProcessor(pipeline, handoffs, budget_bytes, writes)


def known(sinks: Sinks, *devices: str) -> None:
    """Devices the table already has an item of (a first sight writes a device at once)."""
    sinks.states.states.update({d: DeviceState(last_shard=SHARD_ID) for d in devices})


def windowed(
    items: Sequence[Any],
    state: Mapping[str, Any] | None = None,
    first: int = 0,
    final: bool = False,
    window: Mapping[str, str] = WINDOW,
) -> dict[str, Any]:
    event = kinesis_event(items, first_sequence=int(sequence(first))) if items else {"Records": []}
    return event | {
        "window": dict(window),
        "state": dict(state or {}),
        "shardId": SHARD_ID,
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/vitalstream-telemetry",
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": False,
    }


def calm(device_id: str, start_s: int, end_s: int) -> list[dict[str, Any]]:
    return [sample(device_id, t, 70 + t % 3) for t in range(start_s, end_s, 5)]


def test_the_window_state_round_trips_to_the_same_bytes() -> None:
    sinks = Sinks()
    outcome = sinks.processor().invoke(windowed(calm("watch-a", 0, 30) + calm("watch-b", 0, 30)), NOW_MS)
    blob = base64.b64decode(outcome.state[STATE_KEY])
    window = decode_window_state(blob)
    assert sorted(window.states) == ["watch-a", "watch-b"]
    assert window.dirty == {"watch-a", "watch-b"}
    assert encode_window_state(window) == blob
    with pytest.raises(StateFormatError):
        decode_window_state(b"not gzip")


def test_devices_are_read_once_per_window_and_written_once_at_its_end() -> None:
    sinks = Sinks()
    known(sinks, "watch-a", "watch-b")
    processor = sinks.processor()
    first = processor.invoke(windowed(calm("watch-a", 0, 30) + calm("watch-b", 0, 30)), NOW_MS)
    second = processor.invoke(windowed(calm("watch-a", 30, 60), first.state, first=100), NOW_MS)
    assert sinks.states.loads == [["watch-a", "watch-b"]]
    assert sinks.states.saves == []  # nothing changed status: the table waits for the window's end
    assert len(sinks.archive.records) == 18

    final = processor.invoke(windowed([], second.state, final=True), NOW_MS)
    assert final.state == {}
    assert final.failures == []
    assert final.written == 2
    assert sinks.states.saves == [["watch-a", "watch-b"]]
    assert sinks.states.states["watch-a"].last_sequence == sequence(105)
    assert sinks.states.latest["watch-a"].event_ms == T0_MS + 55_000


def many(count: int, start_s: int, end_s: int) -> list[dict[str, Any]]:
    return [item for d in range(count) for item in calm(f"watch-{d:02d}", start_s, end_s)]


def handed_on(sinks: Sinks, devices: int = 4, writes: int = 2) -> WindowOutcome:
    """A window whose final invocation finds more dirty devices than ``writes``: it hands them on."""
    processor = sinks.processor(writes=writes)
    outcome = processor.invoke(windowed(many(devices, 60, 120)), NOW_MS)
    return processor.invoke(windowed([], outcome.state, final=True), NOW_MS)


def test_a_window_with_more_dirty_devices_than_its_share_hands_them_on_in_one_object() -> None:
    sinks = Sinks()
    final = handed_on(sinks)
    assert final.state == {}
    assert (final.written, final.handed_off) == (0, 4)
    assert sinks.states.saves == []
    handoff = decode_handoff(sinks.handoffs.objects[SHARD_ID])
    assert handoff.end_ms == T0_MS + 120_000
    assert handoff.devices == {f"watch-{d:02d}" for d in range(4)}
    assert handoff.window.states["watch-00"].last_sequence == sequence(11)


def test_the_next_window_adopts_the_handed_on_devices_and_writes_them_paced() -> None:
    sinks = Sinks()
    handed_on(sinks)
    processor = sinks.processor(writes=2)
    first = processor.invoke(windowed(calm("watch-03", 120, 125), first=100, window=NEXT_WINDOW), NOW_MS)
    assert first.adopted == 4
    assert sinks.states.loads == [[f"watch-{d:02d}" for d in range(4)]]  # the first window's read only
    assert sinks.states.saves == [["watch-00", "watch-01"]]  # its share, in order
    assert first.state[DUE_KEY] == ["watch-02", "watch-03"]
    assert sinks.states.states["watch-00"].last_sequence == sequence(11)
    second = processor.invoke(
        windowed([], first.state, final=False, window=NEXT_WINDOW)
        | {"Records": windowed(calm("watch-01", 125, 130), first=200)["Records"]},
        NOW_MS,
    )
    assert sinks.states.saves[-1] == ["watch-02", "watch-03"]  # watch-03 with its newer record
    assert sinks.states.latest["watch-03"].event_ms == T0_MS + 120_000
    assert DUE_KEY not in second.state
    final = processor.invoke(windowed([], second.state, final=True, window=NEXT_WINDOW), NOW_MS)
    assert sinks.states.saves[-1] == ["watch-01"]  # it sent again after its write: few, written
    assert (final.written, final.handed_off) == (1, 0)
    assert decode_handoff(sinks.handoffs.objects[SHARD_ID]).devices == frozenset()  # replaced, empty


def test_an_episode_across_the_handoff_is_alerted_once_from_the_adopted_state() -> None:
    sinks = Sinks()
    processor = sinks.processor(writes=1)
    before = [*calm("watch-a", 0, 60), *calm("watch-b", 0, 60)]
    opened = processor.invoke(windowed([*before, *episode("watch-b", 60, 120, 130)]), NOW_MS)
    final = processor.invoke(windowed([], opened.state, final=True), NOW_MS)
    assert final.handed_off == 2
    assert len(sinks.alerts.published) == 1
    processor.invoke(windowed(episode("watch-b", 120, 150, 130), first=100, window=NEXT_WINDOW), NOW_MS)
    assert len(sinks.alerts.published) == 1  # the same episode: the adopted state knew it was open


def test_a_retried_first_invocation_adopts_the_same_devices() -> None:
    sinks = Sinks()
    handed_on(sinks)
    processor = sinks.processor(writes=2)
    event = windowed(calm("watch-03", 120, 125), first=100, window=NEXT_WINDOW)
    once = processor.invoke(event, NOW_MS)
    again = processor.invoke(event, NOW_MS)
    assert again.state == once.state
    assert again.adopted == once.adopted == 4


def test_a_window_with_few_dirty_devices_writes_them_and_replaces_an_empty_handoff_only_once() -> None:
    sinks = Sinks()
    processor = sinks.processor()
    for at, window in ((0, WINDOW), (120, NEXT_WINDOW)):
        outcome = processor.invoke(windowed(calm("watch-a", at, at + 30), first=at, window=window), NOW_MS)
        processor.invoke(windowed([], outcome.state, final=True, window=window), NOW_MS)
    assert len(sinks.states.saves) == 2
    assert sinks.handoffs.puts == [SHARD_ID]  # the first window's empty one; the second found it empty
    assert sinks.handoffs.lineage_asked == [SHARD_ID]  # the shard's first window asked for parents


def test_a_stale_handoff_is_written_out_and_its_devices_read_again() -> None:
    sinks = Sinks()
    handed_on(sinks)
    processor = sinks.processor(writes=2)
    first = processor.invoke(windowed(calm("watch-03", 360, 365), first=100, window=LATER_WINDOW), NOW_MS)
    assert first.adopted == 0
    assert sinks.states.saves == [[f"watch-{d:02d}" for d in range(4)]]  # all of it, before the batch
    assert sinks.states.loads[-1] == ["watch-03"]
    assert first.written == 4
    final = processor.invoke(windowed([], first.state, final=True, window=LATER_WINDOW), NOW_MS)
    assert decode_handoff(sinks.handoffs.objects[SHARD_ID]).devices == frozenset()  # not written out again
    assert final.written == 1


@pytest.mark.parametrize("parents", [("parent-a",), ("parent-a", "parent-b")])
def test_child_shards_adopt_their_parents_devices_of_their_hash_ranges(parents: tuple[str, ...]) -> None:
    sinks = Sinks()
    for parent in parents:
        handed_on(sinks, devices=20)
        sinks.handoffs.objects[parent] = sinks.handoffs.objects.pop(SHARD_ID)
    middle = 2**127
    halves = {"child-low": HashRange(0, middle - 1), "child-high": HashRange(middle, 2**128 - 1)}
    sinks.handoffs.lines = {child: ShardLine(parents, r) for child, r in halves.items()}
    adopted: dict[str, set[str]] = {}
    for child, hash_range in halves.items():
        event = windowed([], final=True, window=NEXT_WINDOW) | {"shardId": child}
        outcome = sinks.processor(writes=100).invoke(event, NOW_MS)
        adopted[child] = set(sinks.states.saves[-1])
        assert outcome.adopted == len(adopted[child])
        assert all(hash_range.holds(d) for d in adopted[child])
    assert adopted["child-low"].isdisjoint(adopted["child-high"])
    assert adopted["child-low"] | adopted["child-high"] == {f"watch-{d:02d}" for d in range(20)}


def test_flush_writes_every_shards_handoff_and_names_what_the_table_refused() -> None:
    sinks = Sinks()
    handed_on(sinks)
    sinks.handoffs.objects["shardId-000000000001"] = encode_handoff(
        Handoff(T0_MS, WindowState("shardId-000000000001"))
    )
    sinks.states.refuse_writes.add("watch-02")
    with pytest.raises(FlushError) as refused:
        sinks.handoffs.handoffs().flush(sinks.states)
    assert refused.value.shard_id == SHARD_ID
    sinks.states.refuse_writes.clear()
    written = sinks.handoffs.handoffs().flush(sinks.states)
    assert written == {SHARD_ID: 4, "shardId-000000000001": 0}
    assert sinks.states.states["watch-00"].last_sequence == sequence(11)
    assert sinks.handoffs.puts == [SHARD_ID]  # the handoffs are left as they are


def test_a_handoff_that_cannot_be_read_or_stored_fails_the_invocation_with_its_cause() -> None:
    sinks = Sinks()
    processor = sinks.processor(writes=2)
    outcome = processor.invoke(windowed(many(4, 60, 120)), NOW_MS)
    sinks.handoffs.down = True
    with pytest.raises(WindowCommitError) as stored:
        processor.invoke(windowed([], outcome.state, final=True), NOW_MS)
    with pytest.raises(WindowCommitError) as read:
        processor.invoke(windowed(calm("watch-a", 120, 125), window=NEXT_WINDOW), NOW_MS)
    assert [e.code for e in stored.value.errors] == [e.code for e in read.value.errors] == ["AccessDenied"]
    sinks.handoffs.down = False
    assert processor.invoke(windowed([], outcome.state, final=True), NOW_MS).handed_off == 4


def test_a_status_change_reaches_the_table_at_once() -> None:
    sinks = Sinks()
    known(sinks, "watch-a", "watch-b")
    processor = sinks.processor()
    first = processor.invoke(windowed(calm("watch-a", 0, 40) + calm("watch-b", 0, 40)), NOW_MS)
    items = interleave(calm("watch-a", 40, 80), episode("watch-b", 40, 75, 130))
    outcome = processor.invoke(windowed(items, first.state, first=100), NOW_MS)
    assert sinks.states.saves == [["watch-b"]]
    assert len(sinks.alerts.published) == 1
    assert decode_window_state(base64.b64decode(outcome.state[STATE_KEY])).dirty == {"watch-a"}


def test_an_invocation_writes_at_most_its_share_and_carries_the_rest_status_changes_first() -> None:
    sinks = Sinks()
    handed_on(sinks)  # watch-00 … watch-03 handed on to the next window
    processor = sinks.processor(writes=2)
    items = interleave(calm("watch-00", 120, 160), episode("watch-03", 120, 155, 130))
    first = processor.invoke(windowed(items, first=100, window=NEXT_WINDOW), NOW_MS)
    # the status change first (watch-03, carried last), then the carried in order
    assert sinks.states.saves == [["watch-00", "watch-03"]]
    assert first.written == 2
    assert first.state[DUE_KEY] == ["watch-01", "watch-02"]
    assert first.queued == 2


@pytest.mark.parametrize(
    ("queued", "left_ms", "expected"),
    [
        (300, 60_000, 100),  # far from the end: the least share
        (50, 60_000, 50),  # never more than is queued
        (10_000, 60_000, 167),  # more than the least can drain: spread over the sixty calls left
        (500, 4_000, 100),  # near the end: over five calls at least (the rest is handed on)
        (1_000, 999, 200),
        (500, -5_000, 100),  # a batch that arrived past the end (the final one is next)
    ],
)
def test_writes_are_spread_over_the_window_and_never_rushed_at_its_end(
    queued: int, left_ms: int, expected: int
) -> None:
    assert writes_now(queued, 100, T0_MS + left_ms, T0_MS) == expected
    assert writes_now(queued, 100, None, T0_MS) == min(queued, max(100, -(-queued // 5)))  # no end told


def test_a_retried_batch_with_the_same_state_yields_the_same_result_and_no_new_effect() -> None:
    sinks = Sinks()
    processor = sinks.processor()
    first = processor.invoke(windowed(calm("watch-a", 0, 30) + calm("watch-b", 0, 30)), NOW_MS)
    event = windowed(interleave(calm("watch-a", 30, 60), episode("watch-b", 30, 65, 130)), first.state, 100)
    once = processor.invoke(event, NOW_MS)
    effects = (dict(sinks.archive.objects), dict(sinks.alerts.published), dict(sinks.states.states))
    again = processor.invoke(event, NOW_MS)
    assert again.state == once.state
    assert again.failures == once.failures
    assert (dict(sinks.archive.objects), dict(sinks.alerts.published), dict(sinks.states.states)) == effects


def test_a_device_whose_alert_failed_keeps_its_window_state_and_is_reported() -> None:
    sinks = Sinks()
    sinks.alerts.refuse_devices.add("watch-b")
    processor = sinks.processor()
    event = windowed(interleave(calm("watch-a", 0, 40), episode("watch-b", 0, 35, 130)))
    outcome = processor.invoke(event, NOW_MS)
    window = decode_window_state(base64.b64decode(outcome.state[STATE_KEY]))
    assert window.dirty == {"watch-a"}
    assert "watch-b" not in window.states
    first_b = next(
        r["kinesis"]["sequenceNumber"] for r in event["Records"] if r["kinesis"]["partitionKey"] == "watch-b"
    )
    assert outcome.failures == [first_b]

    sinks.alerts.refuse_devices.clear()  # Lambda retries from the lowest failure, with the returned state
    retried = processor.invoke(
        tail(event, first_b) | {k: v for k, v in event.items() if k != "Records"} | {"state": outcome.state},
        NOW_MS,
    )
    assert retried.failures == []
    assert len(sinks.alerts.published) == 1
    archived = [(r.device_id, r.sequence_number) for r in sinks.archive.records]
    assert len(archived) == len(set(archived)) == len(event["Records"])


def test_a_final_invocation_whose_writes_are_refused_fails_and_its_retry_commits() -> None:
    sinks = Sinks()
    processor = sinks.processor()
    outcome = processor.invoke(windowed(calm("watch-a", 0, 30) + calm("watch-b", 0, 30)), NOW_MS)
    sinks.states.refuse_writes.add("watch-b")
    with pytest.raises(WindowCommitError):
        processor.invoke(windowed([], outcome.state, final=True), NOW_MS)
    sinks.states.refuse_writes.clear()
    assert processor.invoke(windowed([], outcome.state, final=True), NOW_MS).written == 2
    assert sorted(sinks.states.states) == ["watch-a", "watch-b"]


def test_a_state_past_its_budget_is_written_out_and_the_window_starts_over() -> None:
    sinks = Sinks()
    processor = sinks.processor(budget_bytes=1_000)
    items = [s for d in range(100) for s in calm(f"watch-{d:02d}", 0, 10)]
    outcome = processor.invoke(windowed(items), NOW_MS)
    assert outcome.restarted
    assert decode_window_state(base64.b64decode(outcome.state[STATE_KEY])).states == {}  # not a first one
    assert outcome.written == 100
    assert len(sinks.states.states) == 100
    nxt = processor.invoke(windowed(calm("watch-00", 10, 20), outcome.state, first=500), NOW_MS)
    assert sinks.states.loads[-1] == ["watch-00"]
    assert nxt.failures == []
    assert sinks.handoffs.gets == [SHARD_ID]  # the window's first invocation only: nothing adopted again


def test_state_of_another_shard_is_not_used() -> None:
    sinks = Sinks()
    processor = sinks.processor()
    outcome = processor.invoke(windowed(calm("watch-a", 0, 30)), NOW_MS)
    child = windowed(calm("watch-a", 30, 60), outcome.state, first=100) | {"shardId": "shardId-000000000001"}
    processor.invoke(child, NOW_MS)
    assert sinks.states.loads == [["watch-a"], ["watch-a"]]


def test_a_shard_at_kinesis_write_limit_fits_the_window_state_many_times_over() -> None:
    """1,000 records/s per shard at one sample per device every 5 s is at most 5,000 devices a shard:
    their window state stays far below Lambda's 1 MB (≈ 60 JSON bytes per device)."""
    items = [
        sample(
            f"device-{d:05d}", t, 60 + (d * 7 + t) % 31, steps=(d + t) % 20, spo2=97, battery=80, seq=t // 5
        )
        for t in range(0, 30, 5)
        for d in range(5_000)
    ]
    outcome = Sinks().processor().invoke(windowed(items), NOW_MS)
    size = len(json.dumps(outcome.state))
    assert not outcome.restarted
    assert size < 400_000, f"{size / 5_000:.0f} bytes per device"
