"""``WindowProcessor`` with in-memory ports: device states in the window state, the table once per window."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.core import DEFAULT_CONFIG, Detector, DeviceState, ProcessedRecord, StateFormatError
from service.core.window_state import decode_window_state, encode_window_state
from service.runtime.pipeline import Pipeline
from service.runtime.ports import LoadedStates
from service.runtime.window import DUE_KEY, STATE_KEY, WindowCommitError, WindowProcessor, writes_now
from tests.events import SHARD_ID, T0_MS, episode, interleave, kinesis_event, sample, sequence, tail
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeStateStore

NOW_MS = T0_MS + 120_000
WINDOW = {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:02:00Z"}


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

    def processor(self, budget_bytes: int = 900_000, writes: int = 100) -> WindowProcessor:
        pipeline = Pipeline(
            Detector(DEFAULT_CONFIG), self.states, self.archive, self.alerts, self.dead_letters
        )
        return WindowProcessor(pipeline, budget_bytes, writes)


def known(sinks: Sinks, *devices: str) -> None:
    """Devices the table already has an item of (a first sight writes a device at once)."""
    sinks.states.states.update({d: DeviceState(last_shard=SHARD_ID) for d in devices})


def windowed(
    items: Sequence[Any], state: Mapping[str, Any] | None = None, first: int = 0, final: bool = False
) -> dict[str, Any]:
    event = kinesis_event(items, first_sequence=int(sequence(first))) if items else {"Records": []}
    return event | {
        "window": WINDOW,
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


def test_a_device_is_written_with_its_last_record_of_the_window_as_its_cadence_tells() -> None:
    sinks = Sinks()
    known(sinks, "watch-a", "watch-b", "watch-c", "watch-e")
    processor = sinks.processor()
    first = processor.invoke(windowed(calm("watch-a", 0, 60) + calm("watch-b", 0, 60)), NOW_MS)
    # watch-a moved 50 s of device time: its next record is due past the window's end (10:02), so it
    # is written now; watch-b moved 10 s and comes again. watch-c and watch-d are read from the table
    # this very batch: watch-c's one sample tells no cadence (it waits for the end); watch-e's twelve
    # samples span a minute, so it is due, and so is watch-d, which the table does not know, at first
    # sight (its three samples may be a partial message): both are written by the next invocation (a
    # retry of this batch then reads the same table)
    items = [sample("watch-a", 105, 71), *calm("watch-b", 60, 70), sample("watch-c", 105, 70)]
    second = processor.invoke(
        windowed([*items, *calm("watch-d", 95, 110), *calm("watch-e", 50, 110)], first.state, 100), NOW_MS
    )
    assert sinks.states.saves == [["watch-a"]]
    assert second.written == 1
    assert second.state[DUE_KEY] == ["watch-d", "watch-e"]

    third = processor.invoke(windowed(calm("watch-b", 70, 75), second.state, first=200), NOW_MS)
    assert sinks.states.saves == [["watch-a"], ["watch-d", "watch-e"]]
    assert DUE_KEY not in third.state

    final = processor.invoke(windowed([], third.state, final=True), NOW_MS)
    assert sinks.states.saves == [["watch-a"], ["watch-d", "watch-e"], ["watch-b", "watch-c"]]
    assert final.written == 2
    assert sinks.states.latest["watch-a"].event_ms == T0_MS + 105_000


def test_near_the_end_a_device_quiet_longer_than_its_cadence_told_is_written_before_the_end() -> None:
    sinks = Sinks()
    known(sinks, "watch-a", "watch-b", "watch-c")
    processor = sinks.processor()
    # watch-a and watch-b sent every 5 s, then went quiet (devices back to buffering their samples)
    first = processor.invoke(windowed(calm("watch-a", 0, 40) + calm("watch-b", 0, 40)), NOW_MS)
    early = processor.invoke(windowed(calm("watch-c", 100, 105), first.state, first=100), NOW_MS)
    assert sinks.states.saves == []  # 20 s before the end: they wait, their cadence says they come again
    near = processor.invoke(windowed(calm("watch-c", 105, 115), early.state, first=200), NOW_MS)
    assert sinks.states.saves == [["watch-a", "watch-b"]]  # 10 s before the end, quiet for 75 s
    final = processor.invoke(windowed([], near.state, final=True), NOW_MS)
    assert sinks.states.saves[-1] == ["watch-c"]  # it sent in the last seconds: the final writes it
    assert final.written == 1


def arriving_at(event: dict[str, Any], arrival_ms: int) -> dict[str, Any]:
    """``event`` with every record reaching the stream at ``arrival_ms``."""
    for record in event["Records"]:
        record["kinesis"]["approximateArrivalTimestamp"] = arrival_ms / 1000
    return event


def test_near_the_end_a_device_sending_its_backlog_is_not_quiet() -> None:
    sinks = Sinks()
    known(sinks, "watch-a")
    processor = sinks.processor()
    # an hour-old backlog uploaded in the window's last seconds: old device times, fresh arrivals
    first = processor.invoke(arriving_at(windowed(calm("watch-a", 0, 20)), T0_MS + 111_000), NOW_MS)
    later = windowed(calm("watch-a", 20, 40), first.state, first=100)
    second = processor.invoke(arriving_at(later, T0_MS + 113_000), NOW_MS)
    assert sinks.states.saves == []  # written once, by the final invocation, not after every batch
    final = processor.invoke(windowed([], second.state, final=True), NOW_MS)
    assert sinks.states.saves == [["watch-a"]]
    assert final.written == 1


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
    known(sinks, "watch-a", "watch-b", "watch-c", "watch-d")
    processor = sinks.processor(writes=2)
    first = processor.invoke(windowed([*calm("watch-a", 0, 40), *calm("watch-b", 0, 40)]), NOW_MS)
    first = processor.invoke(
        windowed([*calm("watch-c", 0, 40), *calm("watch-d", 0, 40)], first.state, first=100), NOW_MS
    )
    # every device's last record of the window (a minute of device time each, the window ends at
    # 120 s) and watch-d's episode opens: four writes fall due where the invocation may make two
    items = [*calm("watch-a", 40, 120), *calm("watch-b", 40, 120), *calm("watch-c", 40, 120)]
    second = processor.invoke(
        windowed([*items, *episode("watch-d", 40, 75, 130)], first.state, first=200), NOW_MS
    )
    assert sinks.states.saves == [["watch-a", "watch-d"]]  # the status change first, then cadence order
    assert second.written == 2
    assert second.state[DUE_KEY] == ["watch-b", "watch-c"]
    assert second.queued == 2

    # a batch that arrives at the window's end writes everything queued: its final invocation, nothing
    third = processor.invoke(windowed(calm("watch-d", 120, 125), second.state, first=300), NOW_MS)
    assert sinks.states.saves[-1] == ["watch-b", "watch-c", "watch-d"]  # the carried ones first
    assert DUE_KEY not in third.state
    final = processor.invoke(windowed([], third.state, final=True), NOW_MS)
    assert final.written == 0


@pytest.mark.parametrize(
    ("queued", "left_ms", "expected"),
    [
        (300, 60_000, 100),  # far from the end: the least share
        (50, 60_000, 50),  # never more than is queued
        (1_000, 60_000, 200),  # writes come faster than the least: drained within five invocations
        (500, 4_000, 125),  # four invocations left: a quarter each
        (500, 999, 500),  # the last one: everything
        (500, -5_000, 500),  # a batch that arrived past the end (the final one is next)
    ],
)
def test_writes_are_paced_to_leave_the_final_invocation_nothing(
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
    assert outcome.state == {}
    assert outcome.written == 100
    assert len(sinks.states.states) == 100
    nxt = processor.invoke(windowed(calm("watch-00", 10, 20), outcome.state, first=500), NOW_MS)
    assert sinks.states.loads[-1] == ["watch-00"]
    assert nxt.failures == []


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
