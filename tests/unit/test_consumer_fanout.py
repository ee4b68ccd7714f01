"""Enhanced fan-out: ``register_consumer`` and ``FanOutReader`` over a fake aioboto3 Kinesis client whose
SubscribeToShard returns scripted event streams; and the worker reading a push reader without pacing.

Nothing here waits for a duration to pass: a read that must find no event uses a tiny ``wait_s`` on a
stream that is blocked on an ``asyncio.Event``; every test runs under a guard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError, EventStreamError

from service.core import KinesisRecord
from service.runtime.config import ConsumerSettings
from service.runtime.consumer import app
from service.runtime.consumer.fanout import (
    ConsumerNotActiveError,
    FanOutReader,
    SubscriptionBrokenError,
    register_consumer,
)
from service.runtime.consumer.leases import Lease, Sentinel
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.consumer.ownership import HeldLease
from service.runtime.consumer.reader import PollingReader, ReadResult
from service.runtime.consumer.resident import ResidentShard
from service.runtime.consumer.worker import Ending, Pacing, ShardConsumer
from tests.unit.builders import SHARD
from tests.unit.consumer_fakes import ME, FakeLeaseTable, FakeReader, Sinks, batch, samples, shard_records

CONSUMER_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/vitalstream:1"
STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
ARRIVAL = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
SEQ = 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000


def arun(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 5))


def seq(n: int) -> str:
    return str(SEQ + n)


def kinesis_record(n: int) -> dict[str, Any]:
    return {
        "SequenceNumber": seq(n),
        "ApproximateArrivalTimestamp": ARRIVAL,
        "Data": f'{{"n": {n}}}'.encode(),
        "PartitionKey": f"dev-{n % 3}",
        "EncryptionType": "NONE",
    }


def event(
    *ns: int,
    behind: int = 0,
    continuation: str | None = "last",
    children: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A SubscribeToShardEvent with records ``ns``; its continuation is the last record's by default."""
    body: dict[str, Any] = {"Records": [kinesis_record(n) for n in ns], "MillisBehindLatest": behind}
    if continuation == "last":
        continuation = seq(ns[-1]) if ns else None
    if continuation is not None:
        body["ContinuationSequenceNumber"] = continuation
    if children is not None:
        body["ChildShards"] = children
    return {"SubscribeToShardEvent": body}


# A scripted subscription: events to yield, exceptions to raise, asyncio.Events to block on.
Step = dict[str, Any] | BaseException | asyncio.Event


@dataclass
class FakeEventStream:
    steps: list[Step]
    closed: bool = False
    finished: bool = False  # the generator ran to its end, or was closed or cancelled

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for step in self.steps:
                if isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        finally:
            self.finished = True

    def close(self) -> None:
        self.closed = True


def client_error(code: str, operation: str = "SubscribeToShard") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@dataclass
class FakeKinesis:
    """SubscribeToShard hands out the scripted subscriptions in order (or raises a scripted error);
    the consumer-registration calls follow a scripted list of consumer statuses."""

    subscriptions: deque[list[Step] | BaseException] = field(default_factory=deque)
    streams: list[FakeEventStream] = field(default_factory=list)
    starts: list[dict[str, str]] = field(default_factory=list)
    statuses: deque[str | BaseException] = field(default_factory=deque)
    registered: list[str] = field(default_factory=list)
    register_errors: deque[str | None] = field(default_factory=deque)  # per RegisterStreamConsumer
    calls: list[str] = field(default_factory=list)

    async def subscribe_to_shard(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ConsumerARN"] == CONSUMER_ARN
        assert kwargs["ShardId"] == SHARD
        self.starts.append(dict(kwargs["StartingPosition"]))
        script = self.subscriptions.popleft()
        if isinstance(script, BaseException):
            raise script
        stream = FakeEventStream(script)
        self.streams.append(stream)
        return {"EventStream": stream, "ResponseMetadata": {}}

    async def register_stream_consumer(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"StreamARN": STREAM_ARN, "ConsumerName": "vitalstream"}
        self.calls.append("register")
        code = self.register_errors.popleft() if self.register_errors else None
        if code is not None:
            raise client_error(code, "RegisterStreamConsumer")
        self.registered.append(kwargs["ConsumerName"])
        return {"Consumer": self._consumer(self._status())}

    async def describe_stream_consumer(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"StreamARN": STREAM_ARN, "ConsumerName": "vitalstream"}
        self.calls.append("describe")
        return {"ConsumerDescription": self._consumer(self._status())}

    def _status(self) -> str:
        status = self.statuses.popleft() if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(status, BaseException):
            raise status
        return status

    @staticmethod
    def _consumer(status: str) -> dict[str, Any]:
        return {"ConsumerName": "vitalstream", "ConsumerARN": CONSUMER_ARN, "ConsumerStatus": status}

    async def describe_stream_summary(self, **kwargs: Any) -> dict[str, Any]:
        return {"StreamDescriptionSummary": {"StreamARN": STREAM_ARN, "StreamName": kwargs["StreamName"]}}


def reader(
    kinesis: FakeKinesis, checkpoint: str = Sentinel.TRIM_HORIZON, wait_s: float = 5.0
) -> FanOutReader:
    return FanOutReader(kinesis, CONSUMER_ARN, SHARD, checkpoint, wait_s=wait_s)


async def read_records(r: FanOutReader, reads: int) -> list[int]:
    out: list[int] = []
    for _ in range(reads):
        out += [int(rec.sequence_number) - SEQ for rec in (await r.read()).records]
    return out


# --- events become read results ------------------------------------------------------------------------


def test_each_event_is_one_read_result_with_records_converted_like_polling() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, 2, behind=1500), event(3, behind=0)]]))
        r = reader(kinesis)
        first = await r.read()
        second = await r.read()

        assert kinesis.starts == [{"Type": "TRIM_HORIZON"}]
        assert first.records == [
            KinesisRecord(b'{"n": 1}', SHARD, seq(1), int(ARRIVAL.timestamp() * 1000), "dev-1"),
            KinesisRecord(b'{"n": 2}', SHARD, seq(2), int(ARRIVAL.timestamp() * 1000), "dev-2"),
        ]
        assert (first.millis_behind, first.ended, first.child_shards) == (1500, False, ())
        assert [x.sequence_number for x in second.records] == [seq(3)]
        assert second.millis_behind == 0
        assert r.position == seq(3)
        assert r.push is True

    arun(scenario())


def test_the_first_subscription_starts_after_the_checkpoint() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(8)]]))
        r = reader(kinesis, checkpoint=seq(7))
        assert await read_records(r, 1) == [8]
        assert kinesis.starts == [{"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(7)}]

    arun(scenario())


def test_a_read_with_no_event_returns_empty_and_the_event_still_comes_next() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        kinesis = FakeKinesis(deque([[event(1), gate, event(2)]]))
        r = reader(kinesis, wait_s=0.01)
        assert await read_records(r, 1) == [1]
        idle = await r.read()
        assert idle == ReadResult([], None)
        gate.set()
        second: list[int] = []
        while not second:  # the event that was awaited is handed out, not lost, not duplicated
            second = await read_records(r, 1)
        assert second == [2]
        assert kinesis.starts == [{"Type": "TRIM_HORIZON"}], "no resubscription for an idle read"

    arun(scenario())


# --- resubscription ------------------------------------------------------------------------------------


def test_an_ended_subscription_is_renewed_after_the_last_record_handed_out() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, 2)], [event(3)]]))
        r = reader(kinesis)
        assert await read_records(r, 1) == [1, 2]
        assert await r.read() == ReadResult([], None)  # the ~5-minute end of a subscription
        assert kinesis.streams[0].closed
        assert kinesis.streams[0].finished
        assert await read_records(r, 1) == [3]
        assert kinesis.starts == [
            {"Type": "TRIM_HORIZON"},
            {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(2)},
        ]

    arun(scenario())


def test_events_without_records_move_the_position_to_their_continuation() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(continuation=seq(40))], [event(41)]]))
        r = reader(kinesis)
        assert await r.read() == ReadResult([], 0)
        assert await r.read() == ReadResult([], None)
        assert await read_records(r, 1) == [41]
        assert kinesis.starts[1] == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(40)}

    arun(scenario())


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (
            EventStreamError({"Error": {"Code": "InternalFailure", "Message": "x"}}, "SubscribeToShard"),
            ClientError,
        ),
        (ConnectionResetError("reset by peer"), OSError),
        (aiohttp.ClientPayloadError("response payload is not completed"), SubscriptionBrokenError),
        (asyncio.IncompleteReadError(b"", 12), SubscriptionBrokenError),
    ],
)
def test_a_broken_subscription_raises_for_the_worker_and_resumes_where_it_was(
    failure: Exception, raised: type[Exception]
) -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, 2), failure], [event(3)]]))
        r = reader(kinesis)
        assert await read_records(r, 1) == [1, 2]
        with pytest.raises(raised):
            await r.read()
        assert isinstance(SubscriptionBrokenError("x"), OSError), "the worker backs off from OSErrors"
        assert kinesis.streams[0].closed
        assert await read_records(r, 1) == [3]
        assert kinesis.starts[1] == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(2)}

    arun(scenario())


def test_a_refused_subscription_raises_and_the_next_read_tries_again() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([client_error("ResourceInUseException"), [event(5)]]))
        r = reader(kinesis, checkpoint=seq(4))
        with pytest.raises(ClientError):
            await r.read()
        assert await read_records(r, 1) == [5]
        assert kinesis.starts == [{"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(4)}] * 2

    arun(scenario())


# --- the end of a shard --------------------------------------------------------------------------------

CHILDREN = [
    {"ShardId": "shardId-000000000002", "ParentShards": [SHARD], "HashKeyRange": {}},
    {"ShardId": "shardId-000000000003", "ParentShards": [SHARD], "HashKeyRange": {}},
]


def test_child_shards_without_a_continuation_end_the_shard() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, 2), event(continuation=None, children=CHILDREN)]]))
        r = reader(kinesis)
        assert await read_records(r, 1) == [1, 2]
        last = await r.read()
        assert last.ended
        assert last.child_shards == tuple(CHILDREN)
        assert kinesis.streams[0].closed
        assert (await r.read()).ended, "an ended reader stays ended, with no new subscription"
        assert len(kinesis.starts) == 1

    arun(scenario())


def test_child_shards_with_a_continuation_do_not_end_the_shard() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, children=CHILDREN), event(2)]]))
        r = reader(kinesis)
        first = await r.read()
        assert not first.ended
        assert first.child_shards == tuple(CHILDREN)
        assert await read_records(r, 1) == [2]

    arun(scenario())


def test_a_closed_shard_ends_at_its_tip_when_the_endpoint_never_says_so() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(deque([[event(1, behind=0), event(behind=0, continuation=seq(1))]]))
        r = reader(kinesis)
        r.closed = True  # the scheduler saw the shard's ending sequence number in ListShards
        assert not (await r.read()).ended, "records in hand: not the end yet"
        assert (await r.read()).ended

    arun(scenario())


def test_a_shard_end_checkpoint_needs_no_subscription() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis()
        assert (await reader(kinesis, checkpoint=Sentinel.SHARD_END).read()).ended
        assert kinesis.starts == []

    arun(scenario())


def test_close_cancels_a_waiting_read_and_closes_the_subscription() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        kinesis = FakeKinesis(deque([[gate]]))
        r = reader(kinesis, wait_s=0.01)
        assert await r.read() == ReadResult([], None)
        await r.close()
        stream = kinesis.streams[0]
        assert stream.closed
        assert stream.finished, "the pending event wait was cancelled"
        await r.close()  # idempotent

    arun(scenario())


# --- registering the stream consumer -------------------------------------------------------------------


def test_register_waits_until_the_new_consumer_is_active() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(statuses=deque(["CREATING", "CREATING", "ACTIVE"]))
        arn = await register_consumer(kinesis, STREAM_ARN, "vitalstream", poll_s=0)
        assert arn == CONSUMER_ARN
        assert kinesis.calls == ["register", "describe", "describe"]

    arun(scenario())


def test_register_reuses_a_consumer_registered_under_the_name() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(statuses=deque(["ACTIVE"]), register_errors=deque(["ResourceInUseException"]))
        assert await register_consumer(kinesis, STREAM_ARN, "vitalstream", poll_s=0) == CONSUMER_ARN
        assert kinesis.calls == ["register", "describe"]
        assert kinesis.registered == []

    arun(scenario())


def test_register_registers_again_once_a_deleting_consumer_is_gone() -> None:
    async def scenario() -> None:
        gone = client_error("ResourceNotFoundException", "DescribeStreamConsumer")
        kinesis = FakeKinesis(
            statuses=deque(["DELETING", gone, "CREATING", "ACTIVE"]),
            register_errors=deque(["ResourceInUseException", "ResourceInUseException"]),
        )
        assert await register_consumer(kinesis, STREAM_ARN, "vitalstream", poll_s=0) == CONSUMER_ARN
        assert kinesis.calls == ["register", "describe", "register", "describe", "register", "describe"]
        assert kinesis.registered == ["vitalstream"]

    arun(scenario())


def test_register_gives_up_after_its_polls() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(statuses=deque(["CREATING"]))
        with pytest.raises(ConsumerNotActiveError):
            await register_consumer(kinesis, STREAM_ARN, "vitalstream", poll_s=0, polls=3)
        assert kinesis.calls == ["register", "describe", "describe", "describe"]

    arun(scenario())


def test_register_raises_other_errors() -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(statuses=deque(["ACTIVE"]), register_errors=deque(["LimitExceededException"]))
        with pytest.raises(ClientError):
            await register_consumer(kinesis, STREAM_ARN, "vitalstream", poll_s=0)

    arun(scenario())


# --- the composition root picks the reader -------------------------------------------------------------


def lease() -> Lease:
    return Lease(SHARD, ME, 1, seq(9))


def test_the_app_builds_fan_out_readers_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis(statuses=deque(["ACTIVE"]), subscriptions=deque([[event(10)]]))
        settings = ConsumerSettings(stream_name="s", enhanced_fan_out=True, consumer_name="vitalstream")
        with caplog.at_level(logging.INFO, logger="service.runtime.consumer.app"):
            made = (await app._readers(kinesis, settings))(lease())
        assert isinstance(made, FanOutReader)
        assert made.push
        assert [int(r.sequence_number) - SEQ for r in (await made.read()).records] == [10]
        assert kinesis.starts == [{"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq(9)}]
        assert any(getattr(r, "mode", None) == "enhanced_fan_out" for r in caplog.records)

    arun(scenario())


def test_the_app_builds_polling_readers_by_default(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        kinesis = FakeKinesis()
        with caplog.at_level(logging.INFO, logger="service.runtime.consumer.app"):
            made = (await app._readers(kinesis, ConsumerSettings(stream_name="s")))(lease())
        assert isinstance(made, PollingReader)
        assert not made.push
        assert kinesis.calls == [], "no consumer registered for polling"
        assert any(getattr(r, "mode", None) == "polling" for r in caplog.records)

    arun(scenario())


# --- the worker does not pace a push reader ------------------------------------------------------------


class YieldingReader(FakeReader):
    """A scripted reader whose reads at the tip give the event loop a turn, as a subscription does."""

    async def read(self) -> ReadResult:
        await asyncio.sleep(0)
        return await super().read()


@pytest.mark.parametrize("push", [True, False])
def test_the_worker_paces_a_polling_reader_but_reads_a_push_reader_again_at_once(push: bool) -> None:
    async def scenario() -> None:
        table = FakeLeaseTable()
        held = HeldLease(table.put(Lease(SHARD, ME, 3, Sentinel.TRIM_HORIZON)), table, ME, 10_000)
        records = shard_records(samples("watch-a", 6))
        fake = YieldingReader([batch(records[:3], behind=500), batch(records[3:], behind=0)])
        fake.push = push
        slow = Pacing(idle_s=3600.0, min_interval_s=3600.0, backoff_cap_s=0.01)
        sinks = Sinks()
        worker = ShardConsumer(held, fake, ResidentShard(SHARD, sinks.resident()), ConsumerMetrics(), slow)
        pauses: list[float] = []

        async def pause(seconds: float) -> bool:  # records the pacing asked for, and goes on at once
            pauses.append(seconds)
            await asyncio.sleep(0)
            return False

        worker._pause = pause  # type: ignore[method-assign]
        run = asyncio.create_task(worker.run())
        await fake.drained.wait()
        worker.request_shutdown()
        assert await run is Ending.SHUTDOWN_REQUESTED
        assert sinks.archived() == [r.sequence_number for r in records]
        paced = [s for s in pauses if s > 1000]
        assert paced == [] if push else paced, pauses

    arun(scenario())
