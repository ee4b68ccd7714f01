"""One effects path: Lambda per batch, Lambda windows and the consumer call the ports through
``effects.BatchEffects`` — the same calls in the same order, the same dead-letter dedupe, the same
failures for the same batch."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.core import DEFAULT_CONFIG, Alert, Detector, DeviceState, ProcessedRecord, Reject, decode_records
from service.core.archive_file import FilePolicy
from service.core.decode import records_from_lambda_event
from service.runtime.consumer.resident import ResidentShard, ResidentSinks
from service.runtime.effects import BatchEffects, Position
from service.runtime.pipeline import Pipeline
from service.runtime.ports import BatchSpan, LoadedStates
from service.runtime.sink_health import BatchSinks
from service.runtime.window import WindowProcessor
from tests.events import SHARD_ID, STREAM_ARN, T0_MS, episode, interleave, kinesis_event, sample, sequence
from tests.fakes import (
    FakeAlertPublisher,
    FakeArchive,
    FakeDeadLetters,
    FakeHandoffs,
    FakeSnapshots,
    FakeStateStore,
)

NOW_MS = T0_MS + 120_000
Call = tuple[str, tuple[object, ...]]


@dataclass
class LoggedStates(FakeStateStore):
    log: list[Call] = field(default_factory=list)

    def load(self, device_ids: Collection[str]) -> LoadedStates:
        self.log.append(("load", tuple(sorted(device_ids))))
        return super().load(device_ids)

    def save(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> set[str]:
        self.log.append(("save", tuple(sorted(states))))
        return super().save(states, latest)


@dataclass
class LoggedAlerts(FakeAlertPublisher):
    log: list[Call] = field(default_factory=list)

    def publish(self, alerts: Sequence[Alert]) -> set[str]:
        self.log.append(("publish", tuple(a.alertId for a in alerts)))
        return super().publish(alerts)


@dataclass
class LoggedArchive(FakeArchive):
    log: list[Call] = field(default_factory=list)

    def write(
        self, shard_id: str, records: Sequence[ProcessedRecord], span: BatchSpan | None = None
    ) -> str | None:
        self.log.append(("archive", tuple(r.sequence_number for r in records)))
        return super().write(shard_id, records, span)


@dataclass
class LoggedDeadLetters(FakeDeadLetters):
    log: list[Call] = field(default_factory=list)

    def put(self, rejects: Sequence[Reject]) -> list[Reject]:
        self.log.append(("dead_letters", tuple((r.sequence_number, r.sub_sequence_number) for r in rejects)))
        return super().put(rejects)


@dataclass
class Ports:
    """The four sinks of a batch, writing every call into one ``log``."""

    log: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = LoggedStates(log=self.log)
        self.alerts = LoggedAlerts(log=self.log)
        self.archive = LoggedArchive(log=self.log)
        self.dead_letters = LoggedDeadLetters(log=self.log)

    def pipeline(self) -> Pipeline:
        return Pipeline(Detector(DEFAULT_CONFIG), self.states, self.archive, self.alerts, self.dead_letters)


Mode = Callable[[Ports, dict[str, Any], Collection[Position]], list[str]]


def lambda_batch(ports: Ports, event: dict[str, Any], dead_lettered: Collection[Position]) -> list[str]:
    batch = records_from_lambda_event(event)
    return ports.pipeline().run(SHARD_ID, batch.records, NOW_MS, batch.rejects, dead_lettered).failures


def lambda_window(ports: Ports, event: dict[str, Any], dead_lettered: Collection[Position]) -> list[str]:
    windowed = event | {
        "window": {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:02:00Z"},
        "state": {},
        "shardId": SHARD_ID,
        "eventSourceARN": STREAM_ARN,
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    return (
        WindowProcessor(ports.pipeline(), FakeHandoffs().handoffs())
        .invoke(windowed, NOW_MS, dead_lettered)
        .failures
    )


def consumer(ports: Ports, event: dict[str, Any], dead_lettered: Collection[Position]) -> list[str]:
    sinks = ResidentSinks(
        Detector(DEFAULT_CONFIG),
        ports.states,
        ports.alerts,
        ports.dead_letters,
        ports.archive,
        FakeSnapshots(),
        FilePolicy(),
        latest_interval_ms=60_000,
    )
    step = ResidentShard(SHARD_ID, sinks).process(
        records_from_lambda_event(event).records, NOW_MS, dead_lettered
    )
    return step.failures


MODES: dict[str, Mode] = {"lambda batch": lambda_batch, "lambda window": lambda_window, "consumer": consumer}
SHARED = {"load", "publish", "dead_letters"}  # the steps every mode makes the same way


def mixed() -> dict[str, Any]:
    """watch-a calm, watch-b raising a tachycardia alert, and two records that are not telemetry."""
    items: list[Any] = interleave(
        [sample("watch-a", t, 70) for t in range(0, 40, 5)], episode("watch-b", 0, 35, 130)
    )
    return kinesis_event([b"not json", *items[:5], b"{also not json", *items[5:]])


REJECTED = [sequence(0), sequence(6)]  # where ``mixed`` puts its two bad records


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_every_mode_does_not_store_again_a_reject_already_stored_for_its_position(mode: Mode) -> None:
    ports = Ports()
    first, second = REJECTED

    failures = mode(ports, mixed(), {(first, None)})

    assert failures == []
    assert [args for name, args in ports.log if name == "dead_letters"] == [((second, None),)]
    assert set(ports.dead_letters.stored) == {(SHARD_ID, second, None)}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_every_mode_stores_every_reject_when_none_was_stored_before(mode: Mode) -> None:
    ports = Ports()

    mode(ports, mixed(), ())

    assert [args for name, args in ports.log if name == "dead_letters"] == [
        tuple((s, None) for s in REJECTED)
    ]


def test_every_mode_calls_the_ports_in_the_one_order_with_the_same_arguments() -> None:
    logs = {}
    for name, mode in MODES.items():
        ports = Ports()
        assert mode(ports, mixed(), ()) == []
        logs[name] = ports.log

    assert [call for call, _ in logs["lambda batch"]] == [
        "load",
        "publish",
        "archive",
        "dead_letters",
        "save",
    ]
    # the window holds its states until the window's end; the consumer archives files, not batches
    assert [call for call, _ in logs["lambda window"]] == ["load", "publish", "archive", "dead_letters"]
    assert [call for call, _ in logs["consumer"]] == ["load", "publish", "dead_letters"]
    shared = {name: [c for c in log if c[0] in SHARED] for name, log in logs.items()}
    assert shared["lambda window"] == shared["consumer"] == shared["lambda batch"]
    assert logs["lambda window"][2] == logs["lambda batch"][2]  # the same archive object


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda p: p.states.unreadable.add("watch-b"), id="state read"),
        pytest.param(lambda p: p.alerts.refuse_devices.add("watch-b"), id="alert"),
        pytest.param(lambda p: setattr(p.dead_letters, "down", True), id="dead-letter store down"),
        pytest.param(lambda p: setattr(p.states, "down", True), id="state table down"),
    ],
)
def test_a_sink_failure_fails_the_same_records_in_every_mode(fault: Callable[[Ports], object]) -> None:
    failures = {}
    for name, mode in MODES.items():
        ports = Ports()
        fault(ports)
        failures[name] = mode(ports, mixed(), ())

    assert failures["lambda batch"] != []
    assert failures["lambda window"] == failures["consumer"] == failures["lambda batch"]


def test_a_batch_with_nothing_to_write_calls_no_port() -> None:
    ports = Ports()
    event = kinesis_event([b"not json"])
    effects = BatchEffects(
        Detector(DEFAULT_CONFIG), ports.states, ports.alerts, ports.dead_letters, ports.archive
    )
    batch = records_from_lambda_event(event)
    sinks = BatchSinks()

    applied = effects.apply(
        SHARD_ID, decode_records(batch.records), {}, NOW_MS, sinks, dead_lettered={(sequence(0), None)}
    )

    assert ports.log == []
    assert applied.failures() == []
    assert effects.save(applied.moved, applied.latest, sinks) == set()
    assert ports.log == []
    assert sinks.used == set()


def test_held_states_are_not_read_again() -> None:
    ports = Ports()
    effects = BatchEffects(Detector(DEFAULT_CONFIG), ports.states, ports.alerts, ports.dead_letters)
    batch = records_from_lambda_event(kinesis_event([sample("watch-a", 0, 70), sample("watch-b", 0, 71)]))

    applied = effects.apply(
        SHARD_ID, decode_records(batch.records), {"watch-a": DeviceState()}, NOW_MS, BatchSinks()
    )

    assert ports.log == [("load", ("watch-b",))]
    assert set(applied.loaded) == set()  # the fake table holds neither
    assert set(applied.moved) == {"watch-a", "watch-b"}
