"""Reading one shard through enhanced fan-out: SubscribeToShard (2 MB/s per consumer per shard, pushed).

``register_consumer`` registers the stream consumer once per application (or finds the one already
registered under that name) and waits, polling a bounded number of times, until it is ``ACTIVE``.

``FanOutReader`` is a ``ShardReader`` whose data is pushed: each ``SubscribeToShardEvent`` becomes one
``ReadResult`` (records converted exactly as ``PollingReader`` converts them, ``MillisBehindLatest``,
``ChildShards``). ``read`` waits at most ``wait_s`` for the next event and returns an empty result when
none came, so the worker can notice a shutdown or a lost lease; the event it was waiting for is not
lost, the next ``read`` goes on waiting for it.

Position: the first subscription starts from the lease's checkpoint (``TRIM_HORIZON`` or
``AFTER_SEQUENCE_NUMBER``); every later one ``AFTER_SEQUENCE_NUMBER`` the last record handed out, or,
when the events since carried no records, their ``ContinuationSequenceNumber``. A subscription ends by
itself after about 5 minutes: the next ``read`` subscribes again from there. A subscription that fails
(a refused SubscribeToShard, an exception event, a broken connection) is dropped and the error raised
as ``ClientError``/``BotoCoreError``/``OSError``, which the worker counts and backs off from; the read
after the back-off subscribes again from the same position, so nothing is skipped or read twice.

The shard has ended when an event carries ``ChildShards`` and no ``ContinuationSequenceNumber`` (AWS).
Like ``PollingReader``, a shard the scheduler knows to be closed has also ended when an event at its tip
(no records, ``MillisBehindLatest`` 0) brings nothing more, for endpoints that never send the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, Protocol

import aiohttp
from botocore.eventstream import ParserError as EventStreamParserError
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from service.core import record_from_api
from service.runtime.adapters._errors import CALL_ERRORS, error_code
from service.runtime.consumer.leases import Sentinel
from service.runtime.consumer.reader import ReadResult

log = logging.getLogger(__name__)
REGISTER_POLL_S = 1.0
REGISTER_POLLS = 120  # AWS activates a consumer in seconds; two minutes is a broken registration
READ_WAIT_S = 1.0

# How an event stream breaks besides ClientError/BotoCoreError/OSError: aiohttp payload errors (aiohttp
# carries aiobotocore's streams), a truncated or corrupt frame, an unparsable event.
STREAM_BREAKS: tuple[type[Exception], ...] = (
    aiohttp.ClientError,
    EOFError,
    EventStreamParserError,
    ResponseParserError,
)


class FanOutClient(Protocol):
    """The part of an aioboto3 Kinesis client enhanced fan-out uses."""

    def register_stream_consumer(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def describe_stream_consumer(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def subscribe_to_shard(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...


class EventStream(Protocol):
    """aiobotocore's ``AioEventStream``: async-iterated events, ``close`` drops the connection."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class SubscriptionBrokenError(ConnectionError):
    """The subscription's connection or event stream broke (an ``OSError``: the worker backs off)."""


class ConsumerNotActiveError(TimeoutError):
    """The stream consumer did not become ACTIVE within the polls allowed."""


async def register_consumer(
    kinesis: FanOutClient,
    stream_arn: str,
    name: str,
    *,
    poll_s: float = REGISTER_POLL_S,
    polls: int = REGISTER_POLLS,
) -> str:
    """Register ``name`` as a consumer of the stream, or reuse the one registered under that name;
    return its ARN once it is ACTIVE. One that is being deleted is registered again when it is gone."""
    consumer = await _register_or_describe(kinesis, stream_arn, name)
    for _ in range(polls):
        status = consumer.get("ConsumerStatus")
        if status == "ACTIVE":
            arn = str(consumer["ConsumerARN"])
            log.info("stream consumer active", extra={"consumer": name, "consumer_arn": arn})
            return arn
        await asyncio.sleep(poll_s)
        if status == "DELETING":
            consumer = await _register_or_describe(kinesis, stream_arn, name)
        else:
            consumer = await _describe(kinesis, stream_arn, name)
    raise ConsumerNotActiveError(f"stream consumer {name} not ACTIVE after {polls} polls of {poll_s} s")


async def _register_or_describe(kinesis: FanOutClient, stream_arn: str, name: str) -> dict[str, Any]:
    try:
        response = await kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        log.info("stream consumer %s exists; reusing it", name)
        try:
            return await _describe(kinesis, stream_arn, name)
        except ClientError as gone:  # deleted between the two calls: register again at the next poll
            if error_code(gone) != "ResourceNotFoundException":
                raise
            return {"ConsumerStatus": "DELETING"}
    log.info("registered stream consumer %s", name)
    return dict(response["Consumer"])


async def _describe(kinesis: FanOutClient, stream_arn: str, name: str) -> dict[str, Any]:
    response = await kinesis.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
    return dict(response["ConsumerDescription"])


class FanOutReader:
    push = True

    def __init__(
        self,
        kinesis: FanOutClient,
        consumer_arn: str,
        shard_id: str,
        checkpoint: str,
        *,
        wait_s: float = READ_WAIT_S,
    ) -> None:
        self._kinesis, self._consumer, self._shard = kinesis, consumer_arn, shard_id
        self._position, self._wait_s = checkpoint, wait_s
        self._stream: EventStream | None = None
        self._events: AsyncIterator[dict[str, Any]] | None = None
        self._next: asyncio.Future[dict[str, Any] | None] | None = None
        self._ended = checkpoint == Sentinel.SHARD_END
        self.subscriptions = 0
        self.closed = False  # set by the scheduler when ListShards reports an ending sequence number

    @property
    def position(self) -> str:
        """Where the next subscription starts: after this sequence number, or ``TRIM_HORIZON``."""
        return self._position

    async def read(self) -> ReadResult:
        if self._ended:
            return ReadResult([], 0, ended=True)
        if self._events is None:
            await self._subscribe()
        assert self._events is not None
        if self._next is None:
            self._next = asyncio.ensure_future(_next_event(self._events))
        done, _ = await asyncio.wait({self._next}, timeout=self._wait_s)
        if not done:
            return ReadResult([], None)
        arrived, self._next = self._next, None
        try:
            event = arrived.result()
        except CALL_ERRORS:
            await self._unsubscribe()
            raise
        except STREAM_BREAKS as exc:
            await self._unsubscribe()
            raise SubscriptionBrokenError(f"{type(exc).__name__}: {exc}") from exc
        if event is None:
            log.info("subscription ended; subscribing again after %s", self._position)
            await self._unsubscribe()
            return ReadResult([], None)
        return await self._result(event.get("SubscribeToShardEvent"))

    async def close(self) -> None:
        await self._unsubscribe()

    async def _result(self, body: dict[str, Any] | None) -> ReadResult:
        if body is None:  # not a SubscribeToShardEvent (none other is defined today)
            return ReadResult([], None)
        records = [record_from_api(r, self._shard) for r in body.get("Records", [])]
        continuation = body.get("ContinuationSequenceNumber")
        children = tuple(body.get("ChildShards") or ())
        behind = body.get("MillisBehindLatest")
        if records:
            self._position = records[-1].sequence_number
        elif continuation:
            self._position = str(continuation)
        ended = (bool(children) and not continuation) or (self.closed and not records and behind == 0)
        if ended:
            self._ended = True
            await self._unsubscribe()
        return ReadResult(records, behind, ended=ended, child_shards=children)

    async def _subscribe(self) -> None:
        if self._position == Sentinel.TRIM_HORIZON:
            start: dict[str, str] = {"Type": "TRIM_HORIZON"}
        else:
            start = {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._position}
        response = await self._kinesis.subscribe_to_shard(
            ConsumerARN=self._consumer, ShardId=self._shard, StartingPosition=start
        )
        self._stream = response["EventStream"]
        self._events = aiter(self._stream)
        self.subscriptions += 1
        log.debug("subscribed", extra={"starting_position": start})

    async def _unsubscribe(self) -> None:
        waiting, events, stream = self._next, self._events, self._stream
        self._next, self._events, self._stream = None, None, None
        if waiting is not None:
            waiting.cancel()
            await asyncio.wait({waiting})  # never raises: our own cancellation still reaches us
            if not waiting.cancelled():
                waiting.exception()  # retrieved: a failure of a dropped subscription is not news
        elif isinstance(events, AsyncGenerator):
            with contextlib.suppress(Exception):
                await events.aclose()
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


async def _next_event(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The subscription's next event; None when it has ended (AWS ends one after about 5 minutes)."""
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None
