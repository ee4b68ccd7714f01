"""Reading one shard for the local event source mapping: the blocking (boto3, one thread per shard)
shell of the consumer's ``ShardCursor`` (``service.runtime.consumer.shard_cursor``), plus Lambda's batching.

Lambda gathers a batch of up to ``batch_size`` records, waiting at most ``batching_window_s`` for more,
and polls an idle shard again shortly. A throttled or failing ``GetRecords`` (throttling, 5xx,
``InternalFailure``) is retried in place with the product's full-jitter back-off, up to
``READ_ATTEMPTS`` calls, then the read gives nothing; an expired iterator is replaced at once, from the
cursor's position, so no record is read twice or skipped. Any other error propagates: the poller waits
and reads again from the same position (``restart``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.core import KinesisRecord
from service.runtime.adapters._errors import error_code
from service.runtime.adapters.pacing import Backoff
from service.runtime.consumer.shard_cursor import EXPIRED_ITERATOR, ShardCursor
from service.tools.esm.policy import EsmConfig

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient

READ_ATTEMPTS = 8
READ_BACKOFF_BASE_S, READ_BACKOFF_CAP_S = 0.1, 5.0
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}
)


def worth_retrying(code: str) -> bool:
    """A read refused for throttling or by a server error: the same call may succeed shortly."""
    return code in _THROTTLED or code.startswith("5") or code == "InternalFailure"


class PolledShard:
    """One shard read as Lambda's poller reads it. ``done``: the cursor saw the shard's end (see
    ``ShardCursor``); a shard listed with an ending sequence number is known to be closed."""

    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        shard: dict[str, Any],
        config: EsmConfig,
        stop: threading.Event,
        idle_poll_s: float = 0.25,
    ) -> None:
        self._kinesis, self._stream_name = kinesis, stream_name
        closed = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber") is not None
        # (The ending sequence number itself is no help: kinesis-mock, for one, reports Long.MAX_VALUE.)
        self._cursor = ShardCursor(shard["ShardId"], closed=closed)
        self._config, self._stop, self._idle_poll_s = config, stop, idle_poll_s
        self._backoff = Backoff(base_s=READ_BACKOFF_BASE_S, cap_s=READ_BACKOFF_CAP_S)

    @property
    def done(self) -> bool:
        return self._cursor.ended

    def restart(self) -> None:
        """After a failed read: the next one asks for a new iterator at the cursor's position."""
        self._cursor.expired()

    def read_batch(self, *, window_open: bool) -> list[KinesisRecord]:
        """Up to ``batch_size`` records, gathered for at most ``batching_window_s``; with nothing read,
        poll again after ``idle_poll_s`` — or return empty at once when a tumbling window is open, so
        the poller can end it once its end has passed."""
        batch: list[KinesisRecord] = []
        deadline = time.monotonic() + self._config.batching_window_s
        while not self._stop.is_set() and len(batch) < self._config.batch_size:
            got = self._get_records(self._config.batch_size - len(batch))
            batch.extend(got)
            if self.done:
                break
            if time.monotonic() >= deadline:
                if batch:
                    break
                self._stop.wait(self._idle_poll_s)  # nothing yet: Lambda polls again shortly
                if window_open:
                    break  # back to the loop, which ends the open window once its end has passed
                deadline = time.monotonic() + self._config.batching_window_s
            elif not got:
                self._stop.wait(min(self._idle_poll_s, max(deadline - time.monotonic(), 0.0)))
        return batch

    def _get_records(self, limit: int) -> list[KinesisRecord]:
        cursor = self._cursor
        for attempt in range(1, READ_ATTEMPTS + 1):
            if cursor.iterator is None:
                cursor.started(self._kinesis.get_shard_iterator(**cursor.iterator_request(self._stream_name)))
            assert cursor.iterator is not None
            try:
                response = self._kinesis.get_records(ShardIterator=cursor.iterator, Limit=limit)
            except ClientError as exc:
                code = error_code(exc)
                if code == EXPIRED_ITERATOR:
                    cursor.expired()
                elif worth_retrying(code):
                    self._stop.wait(self._backoff.delay(attempt))
                else:
                    raise
                continue
            return cursor.answer(response).records
        return []
