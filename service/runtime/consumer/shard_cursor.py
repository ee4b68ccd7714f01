"""Reading one shard by GetRecords, decided once: the consumer's ``PollingReader`` (asyncio, aioboto3)
and the local event source mapping's poller (threads, boto3) are thin shells around a ``ShardCursor``.

Why a cursor and two shells rather than one reader: the two modes call Kinesis differently (awaited
calls on an event loop; blocking calls on a thread per shard), and the calls are the smallest part of
reading. What is easy to get wrong — where a new iterator starts, where reading resumes after an
expired iterator, what an answer means (records, lag, the shard's end, its children) — is here, pure,
with no client and no clock, so unit tests drive it with answers alone. Each shell keeps only its two
calls (``GetShardIterator``, ``GetRecords``) and its own reaction to errors (the consumer's worker backs
off; the mapping retries a throttled read in place). Listing a stream's shards is the same shape:
``shard_listing`` decides the pages (a generator that yields requests and takes answers), and
``list_shards`` / ``list_shards_async`` only make the calls.

Contract of a cursor:

- A new iterator starts after the last record ``answer`` handed out, or, when none was, after the
  checkpoint it was made with (``TRIM_HORIZON``: at the oldest record). So after
  ``ExpiredIteratorException`` (``expired``), or any call failure that leaves the iterator in doubt
  (``expired`` too), reading resumes exactly where it stood: nothing handed out is read again and
  nothing is skipped.
- A shard has ended when GetRecords returns no ``NextShardIterator`` (AWS, kinesis-mock), or, on an
  endpoint whose closed shards never end their iterators (moto), when the shard is known to be closed
  (``closed``) and a read at its tip (no records, ``MillisBehindLatest`` 0) finds nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from service.core import KinesisRecord, record_from_api

TRIM_HORIZON = "TRIM_HORIZON"  # the checkpoint of a shard nothing was read from (``Sentinel``'s value)
EXPIRED_ITERATOR = "ExpiredIteratorException"  # the error code ``expired`` answers
Page = dict[str, Any]
Answer = Mapping[str, Any]  # a call's answer, as boto3 or aioboto3 returns it


@dataclass(frozen=True, slots=True)
class ReadResult:
    """One GetRecords answer, read: its records in shard order, the reader's lag behind the tip (None
    when not reported), whether the shard has ended, and the child shards the answer named."""

    records: list[KinesisRecord]
    millis_behind: int | None
    ended: bool = False
    child_shards: tuple[dict[str, Any], ...] = ()


class ShardCursor:
    """Where a reader of one shard stands (see the module contract). ``closed`` may be set at any time
    (the scheduler learns it from ListShards)."""

    def __init__(self, shard_id: str, checkpoint: str = TRIM_HORIZON, *, closed: bool = False) -> None:
        self.shard_id = shard_id
        self._checkpoint = checkpoint
        self.iterator: str | None = None  # None: ask for one (``iterator_request``) before reading
        self.last_read: str | None = None
        self.closed = closed
        self.ended = False

    @property
    def position(self) -> str:
        """Where a new iterator starts: after this sequence number, or at ``TRIM_HORIZON``."""
        return self.last_read or self._checkpoint

    def iterator_request(self, stream_name: str) -> dict[str, Any]:
        """The arguments of the ``GetShardIterator`` call that resumes at ``position``."""
        position = self.position
        if position == TRIM_HORIZON:
            start: dict[str, Any] = {"ShardIteratorType": TRIM_HORIZON}
        else:
            start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
        return {"StreamName": stream_name, "ShardId": self.shard_id, **start}

    def started(self, response: Answer) -> str:
        """Keep the iterator a ``GetShardIterator`` answer carries; return it."""
        self.iterator = str(response["ShardIterator"])
        return self.iterator

    def expired(self) -> None:
        """The iterator is no longer good (expired, or a call failed): the next read asks for a new
        one at ``position``."""
        self.iterator = None

    def answer(self, response: Answer) -> ReadResult:
        """Read a ``GetRecords`` answer: keep its next iterator and its last record's position, and
        say whether the shard has ended."""
        records = [record_from_api(r, self.shard_id) for r in response.get("Records", [])]
        if records:
            self.last_read = records[-1].sequence_number
        behind = response.get("MillisBehindLatest")
        following = response.get("NextShardIterator")
        self.iterator = following
        at_tip_of_closed = self.closed and not records and behind == 0
        self.ended = following is None or at_tip_of_closed
        return ReadResult(records, behind, self.ended, tuple(response.get("ChildShards") or ()))


def shard_listing(stream_name: str) -> Generator[Page, Answer, list[Page]]:
    """Every shard ``ListShards`` reports, all pages: yields each call's arguments, takes its answer,
    returns the shards in the order listed."""
    shards: list[Page] = []
    request: Page = {"StreamName": stream_name}
    while True:
        page = yield request
        shards.extend(dict(shard) for shard in page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


def list_shards(call: Callable[..., Answer], stream_name: str) -> list[Page]:
    """``shard_listing`` over a blocking ``list_shards`` (boto3)."""
    listing = shard_listing(stream_name)
    request = next(listing)
    while True:
        try:
            request = listing.send(call(**request))
        except StopIteration as done:
            shards: list[Page] = done.value
            return shards


async def list_shards_async(call: Callable[..., Awaitable[Answer]], stream_name: str) -> list[Page]:
    """``shard_listing`` over an awaitable ``list_shards`` (aioboto3)."""
    listing = shard_listing(stream_name)
    request = next(listing)
    while True:
        try:
            request = listing.send(await call(**request))
        except StopIteration as done:
            shards: list[Page] = done.value
            return shards
