"""Sink errors in Kubernetes mode: counted by sink and code, logged once per cause, and a permanent
one holds the replica not ready until its sink takes a write again (``SinkHealth``, ``ShardConsumer``).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.core.archive_file import FilePolicy
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.ports import Access, Sink, SinkError
from service.runtime.sink_health import SINK_ERROR_MESSAGE, SINK_RECOVERED_MESSAGE, BatchSinks, SinkHealth
from tests.unit.consumer_fakes import batch, eventually, shard
from tests.unit.test_consumer_scheduler import make_rig as make_scheduler_rig
from tests.unit.test_consumer_scheduler import sid
from tests.unit.test_consumer_worker import GUARD_S, archived, arun, make_rig, metric, seqs, three_devices


def denied(sink: Sink = Sink.ARCHIVE, resource: str = "archive-bucket") -> SinkError:
    return SinkError(sink, "AccessDenied", resource, permanent=True)


def throttled(sink: Sink = Sink.DEVICE_STATE) -> SinkError:
    return SinkError(sink, "ProvisionedThroughputExceededException", "state-table", permanent=False)


# --- SinkHealth: which causes are new, which cleared, whether a permanent one is outstanding ----------


def test_a_cause_appears_once_however_often_it_recurs() -> None:
    health = SinkHealth()
    assert [e.code for e in health.observe([denied(), denied()]).appeared] == ["AccessDenied"]
    assert health.observe([denied()]).appeared == ()
    assert [e.cause for e in health.outstanding()] == [(Sink.ARCHIVE, "AccessDenied", "archive-bucket")]


def test_distinct_causes_each_appear_and_only_permanent_ones_hold_readiness() -> None:
    health = SinkHealth()
    changes = health.observe([throttled(), denied(), denied(resource="other-bucket")])
    assert [e.cause for e in changes.appeared] == [
        (Sink.DEVICE_STATE, "ProvisionedThroughputExceededException", "state-table"),
        (Sink.ARCHIVE, "AccessDenied", "archive-bucket"),
        (Sink.ARCHIVE, "AccessDenied", "other-bucket"),
    ]
    assert health.permanent
    cleared = health.observe([], succeeded={(Sink.ARCHIVE, Access.WRITE)})
    assert {e.resource for e in cleared.cleared} == {"archive-bucket", "other-bucket"}
    assert not health.permanent  # the throttled device table is still outstanding, but transient
    assert [e.sink for e in health.outstanding()] == [Sink.DEVICE_STATE]


def test_a_cause_that_cleared_and_came_back_appears_again() -> None:
    health = SinkHealth()
    health.observe([denied()])
    health.observe([], succeeded={(Sink.ARCHIVE, Access.WRITE)})
    assert [e.code for e in health.observe([denied()]).appeared] == ["AccessDenied"]


def test_a_success_of_another_sink_clears_nothing() -> None:
    health = SinkHealth()
    health.observe([denied()])
    assert (
        health.observe([], succeeded={(Sink.ALERTS, Access.WRITE), (Sink.DEVICE_STATE, Access.WRITE)}).cleared
        == ()
    )
    assert health.permanent


def test_a_read_that_works_does_not_clear_a_refused_write() -> None:
    health = SinkHealth()
    denied_write = SinkError(Sink.DEVICE_STATE, "AccessDeniedException", "state-table", permanent=True)
    health.observe([denied_write])
    assert health.observe([], succeeded={(Sink.DEVICE_STATE, Access.READ)}).cleared == ()
    assert health.permanent
    assert health.observe([], succeeded={(Sink.DEVICE_STATE, Access.WRITE)}).cleared == (denied_write,)
    assert not health.permanent


def test_a_batch_counts_a_sink_as_succeeded_only_when_called_and_without_error() -> None:
    sinks = BatchSinks()
    sinks.answered(Sink.ALERTS, set())
    sinks.loaded(frozenset(), ())
    sinks.answered(Sink.DEVICE_STATE, {"watch-a"})  # a partial failure with no cause given
    sinks.raised(denied())
    assert sinks.succeeded == {(Sink.ALERTS, Access.WRITE), (Sink.DEVICE_STATE, Access.READ)}
    assert sinks.failed == {Sink.DEVICE_STATE, Sink.ARCHIVE}
    assert [(e.sink, e.code, e.permanent) for e in sinks.distinct()] == [
        (Sink.DEVICE_STATE, "PartialFailure", False),
        (Sink.ARCHIVE, "AccessDenied", True),
    ]


def test_the_permanent_gauge_counts_outstanding_permanent_causes_by_sink() -> None:
    metrics = ConsumerMetrics()
    metrics.observe_permanent([denied(), denied(resource="other-bucket"), throttled()])
    assert metric(metrics, "vitalstream_sink_permanent_errors", sink="archive") == 2
    assert metric(metrics, "vitalstream_sink_permanent_errors", sink="device_state") == 0


# --- the shard consumer -------------------------------------------------------------------------------


def test_access_denied_on_uploads_is_logged_once_holds_readiness_and_the_checkpoint_then_clears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def body() -> None:
        records = three_devices(3)
        health = SinkHealth()
        rig = make_rig([batch(records)], policy=FilePolicy(max_records=6), health=health)
        rig.archive.down_code, rig.archive.down_for = "AccessDenied", 10**6
        task = asyncio.create_task(rig.consumer.run())
        refused = lambda: metric(  # noqa: E731
            rig.metrics, "vitalstream_sink_errors_total", sink="archive", code="AccessDenied"
        )

        await eventually(lambda: refused() >= 3, "three refused uploads")
        assert health.permanent
        assert metric(rig.metrics, "vitalstream_sink_permanent_errors", sink="archive") == 1
        assert rig.table.checkpoints() == []  # nothing is checkpointed past the file not uploaded

        rig.archive.down_for = 0  # the permission is restored
        await eventually(lambda: not health.permanent, "the archive took a file")
        await asyncio.wait_for(rig.reader.drained.wait(), GUARD_S)
        rig.consumer.request_shutdown()
        await asyncio.wait_for(task, GUARD_S)

        lines = [r for r in caplog.records if r.getMessage() == SINK_ERROR_MESSAGE]
        assert [(r.sink, r.code, r.resource, r.permanent, r.levelname) for r in lines] == [  # type: ignore[attr-defined]
            ("archive", "AccessDenied", "archive-bucket", True, "ERROR")
        ]
        recovered = [r for r in caplog.records if r.getMessage() == SINK_RECOVERED_MESSAGE]
        assert [(r.sink, r.code) for r in recovered] == [("archive", "AccessDenied")]  # type: ignore[attr-defined]
        assert metric(rig.metrics, "vitalstream_sink_permanent_errors", sink="archive") == 0
        assert archived(rig) == seqs(records)
        assert rig.table.checkpoints() == [records[5].sequence_number, records[-1].sequence_number]

    arun(body())


# --- readiness ----------------------------------------------------------------------------------------


def test_the_replica_is_not_ready_while_a_permanent_sink_error_is_outstanding() -> None:
    async def body() -> None:
        rig = make_scheduler_rig([shard(sid(0))])
        stop = asyncio.Event()
        task = asyncio.create_task(rig.scheduler.run(stop))
        await eventually(rig.scheduler.ready, "ready")
        assert metric(rig.metrics, "vitalstream_ready") == 1

        rig.scheduler.health.observe([throttled()])
        assert rig.scheduler.ready()  # transient: retried, still ready
        rig.scheduler.health.observe([denied()])
        assert not rig.scheduler.ready()
        assert metric(rig.metrics, "vitalstream_ready") == 0

        rig.scheduler.health.observe([], succeeded={(Sink.ARCHIVE, Access.WRITE)})
        assert rig.scheduler.ready()
        assert metric(rig.metrics, "vitalstream_ready") == 1
        stop.set()
        await asyncio.wait_for(task, GUARD_S)

    arun(body())
