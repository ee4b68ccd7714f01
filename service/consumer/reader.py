"""Reading one shard: GetRecords polling (shared throughput) from a checkpoint, to the shard's end.

The reader hands out records in shard order and remembers the last one it handed out; the worker
reads again only once those are done, so an expired iterator (``ExpiredIteratorException``, after
5 minutes without a read) is recovered from there with ``AFTER_SEQUENCE_NUMBER`` (or from the
lease's checkpoint when nothing was read yet). Throttling and server errors propagate as
``ClientError``: the worker backs off, and the iterator, still valid, is used again.

A shard has ended when GetRecords returns no ``NextShardIterator`` (AWS, kinesis-mock), or, on an
endpoint whose closed shards never end their iterators (moto), when the shard is known to be closed
and a read at its tip (no records, ``MillisBehindLatest`` 0) finds nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.adapters._errors import error_code
from service.consumer.leases import Sentinel
from service.core import KinesisRecord, record_from_api

log = logging.getLogger(__name__)


class KinesisClient(Protocol):
    """The part of an aioboto3 Kinesis client the consumer uses (aioboto3 ships no type stubs)."""

    def get_shard_iterator(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def get_records(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...
    def list_shards(self, **kwargs: Any) -> Awaitable[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: list[KinesisRecord]
    millis_behind: int | None
    ended: bool = False
    child_shards: tuple[dict[str, Any], ...] = ()


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
        self._kinesis, self._stream, self._shard = kinesis, stream_name, shard_id
        self._checkpoint, self._limit = checkpoint, max_records
        self._iterator: str | None = None
        self._last_read: str | None = None
        self.closed = False  # set by the scheduler when ListShards reports an ending sequence number

    async def read(self) -> ReadResult:
        if self._iterator is None:
            self._iterator = await self._new_iterator()
        try:
            response = await self._kinesis.get_records(ShardIterator=self._iterator, Limit=self._limit)
        except ClientError as exc:
            if error_code(exc) != "ExpiredIteratorException":
                raise
            log.info("iterator expired; reading again after %s", self._last_read or self._checkpoint)
            self._iterator = None
            return ReadResult([], None)
        records = [record_from_api(r, self._shard) for r in response.get("Records", [])]
        if records:
            self._last_read = records[-1].sequence_number
        behind = response.get("MillisBehindLatest")
        following = response.get("NextShardIterator")
        self._iterator = following
        at_tip_of_closed = self.closed and not records and behind == 0
        return ReadResult(
            records,
            behind,
            ended=following is None or at_tip_of_closed,
            child_shards=tuple(response.get("ChildShards") or ()),
        )

    async def close(self) -> None:
        self._iterator = None

    async def _new_iterator(self) -> str:
        position = self._last_read or self._checkpoint
        if position == Sentinel.TRIM_HORIZON:
            kwargs: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
        response = await self._kinesis.get_shard_iterator(
            StreamName=self._stream, ShardId=self._shard, **kwargs
        )
        return str(response["ShardIterator"])
