"""``Pipeline.run`` with in-memory ports: which records count as done when a sink fails."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from service.core import DEFAULT_CONFIG, Detector, KinesisRecord, Reject
from service.runtime.pipeline import Pipeline
from tests.events import SHARD_ID, T0_MS, episode, interleave, sample, sequence
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeStateStore

NOW_MS = T0_MS + 120_000


@pytest.fixture
def archive() -> FakeArchive:
    return FakeArchive()


@pytest.fixture
def states() -> FakeStateStore:
    return FakeStateStore()


@pytest.fixture
def alerts() -> FakeAlertPublisher:
    return FakeAlertPublisher()


@pytest.fixture
def dead_letters() -> FakeDeadLetters:
    return FakeDeadLetters()


@pytest.fixture
def pipeline(
    archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher, dead_letters: FakeDeadLetters
) -> Pipeline:
    return Pipeline(Detector(DEFAULT_CONFIG), states, archive, alerts, dead_letters)


def records(items: list[dict[str, object] | bytes]) -> list[KinesisRecord]:
    return [
        KinesisRecord(
            item if isinstance(item, bytes) else json.dumps(item).encode(), SHARD_ID, sequence(i), T0_MS + i
        )
        for i, item in enumerate(items)
    ]


def two_devices() -> list[KinesisRecord]:
    """watch-a at even, watch-b at odd positions; watch-b raises a tachycardia alert."""
    calm = [sample("watch-a", t, 70) for t in range(0, 40, 5)]
    return records(list(interleave(calm, episode("watch-b", 0, 35, 130))))


def first_of(batch: list[KinesisRecord], device_id: str) -> str:
    return next(r.sequence_number for r in batch if json.loads(r.data)["deviceId"] == device_id)


def test_all_sinks_up_commits_everything(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher
) -> None:
    batch = two_devices()
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert outcome.failures == []
    assert len(archive.records) == len(batch)
    assert set(states.states) == {"watch-a", "watch-b"}
    assert [a.deviceId for a in alerts.published.values()] == ["watch-b"]


def test_archive_outage_fails_every_device_and_saves_no_state(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore
) -> None:
    archive.down = True
    batch = two_devices()
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert outcome.failed_devices == {"watch-a", "watch-b"}
    assert outcome.failures == [first_of(batch, "watch-a"), first_of(batch, "watch-b")]
    assert states.states == {}


def test_state_write_refused_for_one_device_reports_only_that_device(
    pipeline: Pipeline, states: FakeStateStore
) -> None:
    states.refuse_writes = {"watch-b"}
    batch = two_devices()
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert outcome.failures == [first_of(batch, "watch-b")]
    assert set(states.states) == {"watch-a"}
    assert states.states["watch-a"].last_sequence == batch[-2].sequence_number


def test_dead_letter_outage_reports_the_reject(
    pipeline: Pipeline, dead_letters: FakeDeadLetters, states: FakeStateStore
) -> None:
    dead_letters.down = True
    batch = records([sample("watch-a", 0, 70), b"not json", sample("watch-a", 5, 71)])
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert outcome.failures == [batch[1].sequence_number]
    assert states.states["watch-a"].last_sequence == batch[2].sequence_number


def test_a_rerun_batch_does_not_store_its_rejects_again(
    pipeline: Pipeline, dead_letters: FakeDeadLetters, states: FakeStateStore
) -> None:
    batch = records([sample("watch-a", 0, 70), b"not json", b"{also not json", sample("watch-b", 5, 71)])
    done = {(batch[1].sequence_number, None)}  # the first run stored this one, then a state write failed
    puts: list[list[str]] = []
    original = dead_letters.put

    def counting(rejects: Sequence[Reject]) -> list[Reject]:
        puts.append([r.sequence_number for r in rejects])
        return original(rejects)

    dead_letters.put = counting  # type: ignore[method-assign]
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS, dead_lettered=done)
    assert outcome.failures == []
    assert puts == [[batch[2].sequence_number]]


def test_unavailable_state_holds_back_that_device_only(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher
) -> None:
    states.unreadable = {"watch-b"}
    batch = two_devices()
    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert min(outcome.failures, key=int) == first_of(batch, "watch-b")
    assert {r.device_id for r in archive.records} == {"watch-a"}
    assert set(states.states) == {"watch-a"}
    assert alerts.published == {}


def test_failed_alert_keeps_the_device_back_and_the_retry_publishes_once(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher
) -> None:
    alerts.refuse_devices = {"watch-b"}
    batch = two_devices()
    first = pipeline.run(SHARD_ID, batch, NOW_MS)
    assert first.failures == [first_of(batch, "watch-b")]
    assert "watch-b" not in states.states

    alerts.refuse_devices = set()
    start = int(min(first.failures, key=int))
    second = pipeline.run(SHARD_ID, [r for r in batch if r.seq_int >= start], NOW_MS + 1_000)
    assert second.failures == []
    positions = [(r.device_id, r.sequence_number) for r in archive.records]
    assert sorted(positions) == sorted(set(positions))
    assert len(positions) == len(batch)
    assert len(alerts.published) == 1


def test_state_table_outage_on_load_fails_every_device(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore
) -> None:
    states.down = True
    batch = two_devices()

    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)

    assert outcome.failures == [r.sequence_number for r in batch]  # every record of every device
    assert archive.records == []


def test_alert_topic_outage_fails_only_devices_with_alerts(
    pipeline: Pipeline, archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher
) -> None:
    alerts.down = True
    batch = two_devices()

    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)

    assert outcome.failures == [first_of(batch, "watch-b")]
    assert set(states.states) == {"watch-a"}
    assert {r.device_id for r in archive.records} == {"watch-a"}


def test_redelivery_writes_no_state(pipeline: Pipeline, states: FakeStateStore) -> None:
    batch = two_devices()
    pipeline.run(SHARD_ID, batch, NOW_MS)
    states.refuse_writes = {"watch-a", "watch-b"}  # any write now would be reported as a failure

    outcome = pipeline.run(SHARD_ID, batch, NOW_MS)

    assert outcome.failures == []
    assert outcome.result.redelivered == len(batch)


def test_with_the_archive_role_deployed_a_batch_archives_nothing_and_still_commits(
    archive: FakeArchive, states: FakeStateStore, alerts: FakeAlertPublisher, dead_letters: FakeDeadLetters
) -> None:
    files = Pipeline(Detector(DEFAULT_CONFIG), states, archive, alerts, dead_letters, archive_per_batch=False)
    batch = two_devices()
    outcome = files.run(SHARD_ID, batch, now_ms=NOW_MS)
    assert outcome.failures == []
    assert outcome.archive_key is None
    assert not archive.objects
    assert alerts.published
    assert set(states.states) == {"watch-a", "watch-b"}
