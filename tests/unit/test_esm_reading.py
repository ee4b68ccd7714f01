"""``PolledShard``: the local event source mapping reads a shard through the consumer's ``ShardCursor``,
retrying a throttled read in place with the full-jitter back-off, replacing an expired iterator at the
cursor's position. A scripted boto3-shaped client; waits are recorded, never slept."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.tools.esm.policy import EsmConfig
from service.tools.esm.reading import READ_ATTEMPTS, READ_BACKOFF_BASE_S, READ_BACKOFF_CAP_S, PolledShard

SHARD_ID = "shardId-000000000000"
ARRIVAL = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
Step = Callable[[], dict[str, Any]]


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


def records(*sequences: int, following: str | None = "it-next", behind: int = 0) -> Step:
    def step() -> dict[str, Any]:
        data = [
            {"Data": b"{}", "SequenceNumber": str(s), "ApproximateArrivalTimestamp": ARRIVAL}
            for s in sequences
        ]
        response: dict[str, Any] = {"Records": data, "MillisBehindLatest": behind}
        if following is not None:
            response["NextShardIterator"] = following
        return response

    return step


def raises(code: str) -> Step:
    def step() -> dict[str, Any]:
        raise error(code)

    return step


class ScriptedKinesis:
    """GetRecords answers (or raises) from a script; GetShardIterator hands out it-1, it-2, ..."""

    def __init__(self, *script: Step) -> None:
        self._script = list(script)
        self.iterator_requests: list[dict[str, Any]] = []
        self.reads: list[str] = []

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.reads.append(ShardIterator)
        return self._script.pop(0)()


class RecordedStop(threading.Event):
    """A stop event that records every wait and returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def polled(kinesis: ScriptedKinesis, stop: RecordedStop, *, closed: bool = False) -> PolledShard:
    shard: dict[str, Any] = {"ShardId": SHARD_ID, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
    if closed:
        shard["SequenceNumberRange"]["EndingSequenceNumber"] = "999"
    return PolledShard(kinesis, "telemetry", shard, EsmConfig(batch_size=10), stop)  # type: ignore[arg-type]


def sequences(batch: list[Any]) -> list[str]:
    return [r.sequence_number for r in batch]


def test_reading_starts_at_the_oldest_record_and_goes_on_with_the_next_iterator() -> None:
    kinesis = ScriptedKinesis(records(1, 2, following="it-a"), records(3))
    shard = polled(kinesis, RecordedStop())

    assert sequences(shard.read_batch(window_open=False)) == ["1", "2"]
    assert sequences(shard.read_batch(window_open=False)) == ["3"]
    assert kinesis.iterator_requests == [
        {"StreamName": "telemetry", "ShardId": SHARD_ID, "ShardIteratorType": "TRIM_HORIZON"}
    ]
    assert kinesis.reads == ["it-1", "it-a"]


def test_a_throttled_read_is_retried_in_place_after_full_jitter_waits() -> None:
    kinesis = ScriptedKinesis(
        raises("ProvisionedThroughputExceededException"), raises("InternalFailure"), raises("500"), records(1)
    )
    stop = RecordedStop()

    assert sequences(polled(kinesis, stop).read_batch(window_open=False)) == ["1"]
    assert len(stop.waits) == 3
    for attempt, wait in enumerate(stop.waits, start=1):
        assert 0.0 <= wait <= min(READ_BACKOFF_CAP_S, READ_BACKOFF_BASE_S * 2 ** (attempt - 1))
    assert kinesis.reads == ["it-1"] * 4  # the iterator, still valid, is used again
    assert len(kinesis.iterator_requests) == 1


def test_a_read_throttled_every_time_gives_nothing_after_its_attempts() -> None:
    kinesis = ScriptedKinesis(*[raises("ThrottlingException")] * READ_ATTEMPTS)
    stop = RecordedStop()

    assert polled(kinesis, stop).read_batch(window_open=True) == []
    assert len(kinesis.reads) == READ_ATTEMPTS
    backoff_waits = stop.waits[:READ_ATTEMPTS]  # then one idle poll
    assert all(0.0 <= w <= READ_BACKOFF_CAP_S for w in backoff_waits)


def test_an_expired_iterator_is_replaced_after_the_last_record_read() -> None:
    kinesis = ScriptedKinesis(records(1, 2), raises("ExpiredIteratorException"), records(3))
    shard = polled(kinesis, RecordedStop())
    shard.read_batch(window_open=False)

    assert sequences(shard.read_batch(window_open=False)) == ["3"]
    assert kinesis.iterator_requests[-1] == {
        "StreamName": "telemetry",
        "ShardId": SHARD_ID,
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "2",
    }
    assert kinesis.reads == ["it-1", "it-next", "it-2"]


def test_any_other_error_propagates_and_restart_resumes_at_the_same_position() -> None:
    kinesis = ScriptedKinesis(records(1), raises("AccessDeniedException"), records(2))
    shard = polled(kinesis, RecordedStop())
    shard.read_batch(window_open=False)

    with pytest.raises(ClientError):
        shard.read_batch(window_open=False)
    shard.restart()

    assert sequences(shard.read_batch(window_open=False)) == ["2"]
    assert kinesis.iterator_requests[-1]["StartingSequenceNumber"] == "1"


@pytest.mark.parametrize(
    ("closed", "last", "done"),
    [
        (False, records(following=None), True),  # the stream ended the shard
        (True, records(behind=0), True),  # closed, and nothing more at its tip (moto)
        (False, records(behind=0), False),  # open, at its tip: Lambda polls again
    ],
)
def test_when_the_shard_is_done(closed: bool, last: Step, done: bool) -> None:
    shard = polled(ScriptedKinesis(records(1), last), RecordedStop(), closed=closed)
    shard.read_batch(window_open=False)

    assert shard.read_batch(window_open=True) == []
    assert shard.done is done
