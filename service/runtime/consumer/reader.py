"""Reading one shard: GetRecords polling (shared throughput) from a checkpoint, to the shard's end.

``PollingReader`` is the asyncio shell of a ``ShardCursor`` (``shard_cursor``: where a new iterator
starts, what an answer means, when the shard has ended; the local event source mapping reads through
the same cursor). The reader hands out records in shard order and the cursor remembers the last one
handed out; the worker reads again only once those are done, so an expired iterator
(``ExpiredIteratorException``, after 5 minutes without a read) is recovered from there with
``AFTER_SEQUENCE_NUMBER`` (or from the lease's checkpoint when nothing was read yet). Throttling and
server errors propagate as ``ClientError``: the worker backs off, and the iterator, still valid, is
used again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.runtime.adapters._errors import error_code
from service.runtime.consumer.shard_cursor import EXPIRED_ITERATOR, ReadResult, ShardCursor

__all__ = ["KinesisClient", "PollingReader", "ReadResult", "ShardReader"]
log = logging.getLogger(__name__)


class KinesisClient(Protocol):
    """The part of an aioboto3 Kinesis client the consumer uses (aioboto3 ships no type stubs)."""

    def get_shard_iterator(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def get_records(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def list_shards(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...


class ShardReader(Protocol):
    """What the worker reads through: polling here, enhanced fan-out in ``fanout``.

    ``push`` tells the worker how to pace: a polling reader (False) is read at most every
    ``Pacing.min_interval_s``; a push reader (True) waits for data inside ``read`` itself, bounded
    by a short wait, so the worker reads again at once."""

    closed: bool
    push: bool

    async def read(self) -> ReadResult: ...

    async def close(self) -> None: ...


class PollingReader:
    push = False

    def __init__(
        self, kinesis: KinesisClient, stream_name: str, shard_id: str, checkpoint: str, max_records: int
    ) -> None:
        self._kinesis, self._stream, self._limit = kinesis, stream_name, max_records
        self._cursor = ShardCursor(shard_id, checkpoint)

    @property
    def closed(self) -> bool:
        """Set by the scheduler when ListShards reports an ending sequence number."""
        return self._cursor.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self._cursor.closed = value

    async def read(self) -> ReadResult:
        cursor = self._cursor
        if cursor.iterator is None:
            cursor.started(await self._kinesis.get_shard_iterator(**cursor.iterator_request(self._stream)))
        assert cursor.iterator is not None
        try:
            response = await self._kinesis.get_records(ShardIterator=cursor.iterator, Limit=self._limit)
        except ClientError as exc:
            if error_code(exc) != EXPIRED_ITERATOR:
                raise
            log.info("iterator expired; reading again after %s", cursor.position)
            cursor.expired()
            return ReadResult([], None)
        return cursor.answer(response)

    async def close(self) -> None:
        self._cursor.expired()
