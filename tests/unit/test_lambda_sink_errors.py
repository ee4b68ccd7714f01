"""Sink errors in Lambda mode: the pipeline and the window processor keep every one (no ``except
SinkError`` drops it); ``test_lambda_logs`` checks the JSON line each cause becomes."""

from __future__ import annotations

import pytest

from service.core import DEFAULT_CONFIG, Detector, records_from_lambda_event
from service.runtime.pipeline import Pipeline
from service.runtime.ports import Access, Sink
from service.runtime.window import WindowCommitError
from tests.events import SHARD_ID, episode, kinesis_event
from tests.fakes import FakeAlertPublisher, FakeArchive, FakeDeadLetters, FakeStateStore
from tests.unit.test_window import NOW_MS, Sinks, calm, windowed


def pipeline(archive: FakeArchive, alerts: FakeAlertPublisher) -> Pipeline:
    return Pipeline(Detector(DEFAULT_CONFIG), FakeStateStore(), archive, alerts, FakeDeadLetters())


def test_the_pipeline_keeps_each_distinct_cause_and_the_sinks_that_took_their_writes() -> None:
    archive = FakeArchive(down=True, down_code="AccessDenied")
    run = pipeline(archive, FakeAlertPublisher())
    batch = records_from_lambda_event(kinesis_event(calm("watch-a", 0, 30) + calm("watch-b", 0, 30)))

    outcome = run.run(SHARD_ID, batch.records, NOW_MS)

    assert outcome.failures  # nothing archived: every device's records come again
    assert [(e.sink, e.code, e.resource, e.permanent) for e in outcome.errors] == [
        (Sink.ARCHIVE, "AccessDenied", "archive-bucket", True)
    ]
    assert outcome.failed_sinks == {Sink.ARCHIVE}
    assert (Sink.DEVICE_STATE, Access.READ) in outcome.succeeded  # the device table was read
    assert (Sink.ARCHIVE, Access.WRITE) not in outcome.succeeded


def test_a_whole_alert_outage_is_kept_with_its_code() -> None:
    run = pipeline(FakeArchive(), FakeAlertPublisher(down=True))
    batch = records_from_lambda_event(kinesis_event(episode("watch-racing", 0, 35, 130)))

    outcome = run.run(SHARD_ID, batch.records, NOW_MS)

    assert [(e.sink, e.code) for e in outcome.errors] == [(Sink.ALERTS, "AuthorizationError")]
    assert (Sink.ALERTS, Access.WRITE) not in outcome.succeeded


def test_a_refused_window_commit_carries_its_causes() -> None:
    sinks = Sinks()
    processor = sinks.processor()
    outcome = processor.invoke(windowed(calm("watch-a", 0, 30)), NOW_MS)
    assert outcome.errors == ()
    sinks.states.refuse_writes.add("watch-a")

    with pytest.raises(WindowCommitError) as raised:
        processor.invoke(windowed([], outcome.state, final=True), NOW_MS)

    assert [(e.sink, e.code) for e in raised.value.errors] == [(Sink.DEVICE_STATE, "PartialFailure")]


def test_a_window_batch_keeps_its_archive_error() -> None:
    sinks = Sinks()
    sinks.archive.down = True
    outcome = sinks.processor().invoke(windowed(calm("watch-a", 0, 30)), NOW_MS)
    assert outcome.failures
    assert [(e.sink, e.code) for e in outcome.errors] == [(Sink.ARCHIVE, "ServiceUnavailable")]
