"""Kinesis publisher: PutRecords in batches, partition key = device id, retry of the failed entries only.

Contract of ``KinesisPublisher.deliver``:

- Every message is either accepted by the stream (once per successful entry; an entry the stream
  accepted is never re-sent) or counted as failed; ``retried`` counts re-sent entries.
- Per-device order: a request carries at most one message per device, and a device's next message is
  taken only after its previous one was accepted (or given up on). So a device's later message is never
  accepted before an earlier one — PutRecords makes no ordering promise between entries of one request.
- A request holds at most 500 records and 5 MiB (data + partition keys); a record over 1 MiB fails.
- Throttling (``ProvisionedThroughputExceededException`` per entry or per call), ``InternalFailure``,
  5xx and connection errors are retried after exponential back-off with full jitter; any other call
  error (no such stream, access denied, validation) raises ``PublishError``.
- ``rate`` caps messages per second (retries included) with a token bucket; 0 means unlimited.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointConnectionError

from service.runtime.adapters.pacing import Backoff, TokenBucket
from service.runtime.publishing import Message, PublishReport

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

MAX_RECORDS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
THROTTLED = "ProvisionedThroughputExceededException"
RETRYABLE_ENTRY_ERRORS = frozenset({THROTTLED, "InternalFailure"})
RETRYABLE_CALL_ERRORS = frozenset(
    {
        THROTTLED,
        "ThrottlingException",
        "LimitExceededException",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
_CALL_FAILED = "CallFailed"  # the whole request failed in a retryable way: every entry is retried


class PublishError(Exception):
    """A PutRecords call failed for a reason retrying cannot fix (no such stream, access denied)."""


@dataclass(slots=True)
class Delivery:
    """What happened to each message of one ``deliver`` call, by index into its ``messages``."""

    accepted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    report: PublishReport = field(default_factory=PublishReport)


def record_bytes(message: Message) -> int:
    """The size Kinesis counts against its limits: data plus partition key."""
    return len(message.payload) + len(message.device_id.encode("utf-8"))


def next_request(
    messages: Sequence[Message],
    pending: OrderedDict[str, deque[int]],
    max_records: int = MAX_RECORDS_PER_REQUEST,
    max_bytes: int = MAX_BYTES_PER_REQUEST,
) -> list[int]:
    """Take the oldest pending message of each device, round robin, until a request is full.

    Devices served go to the back of ``pending``; a device whose queue empties leaves it."""
    request: list[int] = []
    size = 0
    for device_id in list(pending):
        queue = pending[device_id]
        length = record_bytes(messages[queue[0]])
        if len(request) == max_records or (request and size + length > max_bytes):
            break
        request.append(queue.popleft())
        size += length
        if queue:
            pending.move_to_end(device_id)
        else:
            del pending[device_id]
    return request


def _retryable(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code in RETRYABLE_CALL_ERRORS or status >= 500


class KinesisPublisher:
    """``Publisher`` onto one Kinesis stream (see the module contract)."""

    def __init__(
        self,
        client: KinesisClient,
        stream_name: str,
        *,
        rate: float = 0.0,
        max_attempts: int | None = 10,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_attempts`` is the number of sends per message before it counts as failed; None retries
        until the stream accepts it (the bridge's at-least-once mode)."""
        self._client = client
        self._stream_name = stream_name
        self._bucket = TokenBucket(rate, clock=clock)
        self._max_records = (
            max(1, min(MAX_RECORDS_PER_REQUEST, int(rate))) if rate else MAX_RECORDS_PER_REQUEST
        )
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._sleep = sleep

    def publish(self, messages: Sequence[Message]) -> PublishReport:
        return self.deliver(messages).report

    def close(self) -> None:
        """Nothing is buffered between calls; the boto3 client belongs to the caller."""

    def deliver(self, messages: Sequence[Message]) -> Delivery:
        delivery = Delivery()
        pending: OrderedDict[str, deque[int]] = OrderedDict()
        for index, message in enumerate(messages):
            if record_bytes(message) > MAX_RECORD_BYTES:
                delivery.failed.append(index)
            else:
                pending.setdefault(message.device_id, deque()).append(index)
        attempts = [0] * len(messages)
        failed_rounds = 0
        while pending:
            request = next_request(messages, pending, self._max_records)
            wait = self._bucket.reserve(len(request))
            if wait > 0:
                self._sleep(wait)
            retry: list[int] = []
            for index, error in zip(request, self._put(messages, request), strict=True):
                attempts[index] += 1
                if error is None:
                    delivery.accepted.append(index)
                elif self._worth_retrying(error, attempts[index]):
                    retry.append(index)
                else:
                    delivery.failed.append(index)
            _requeue(messages, retry, pending)
            delivery.report.retried += len(retry)
            failed_rounds = failed_rounds + 1 if retry else 0
            if retry:
                self._sleep(self._backoff.delay(failed_rounds))
        delivery.report.sent += len(delivery.accepted)
        delivery.report.failed += len(delivery.failed)
        return delivery

    def _worth_retrying(self, error: str, attempts: int) -> bool:
        retryable = error in RETRYABLE_ENTRY_ERRORS or error == _CALL_FAILED
        return retryable and (self._max_attempts is None or attempts < self._max_attempts)

    def _put(self, messages: Sequence[Message], request: list[int]) -> list[str | None]:
        """One PutRecords call: the error code of each entry, None when accepted."""
        entries: list[PutRecordsRequestEntryTypeDef] = [
            {"Data": messages[i].payload, "PartitionKey": messages[i].device_id} for i in request
        ]
        try:
            response = self._client.put_records(StreamName=self._stream_name, Records=entries)
        except ClientError as exc:
            if _retryable(exc):
                return [_CALL_FAILED] * len(request)
            raise PublishError(f"PutRecords to {self._stream_name}: {exc}") from exc
        except (EndpointConnectionError, HTTPClientError):  # refused, reset, read timeout: retry it
            return [_CALL_FAILED] * len(request)
        return [entry.get("ErrorCode") for entry in response["Records"]]


def _requeue(messages: Sequence[Message], retry: list[int], pending: OrderedDict[str, deque[int]]) -> None:
    """Put each retried message back at the head of its device's queue: nothing of it overtakes."""
    for index in retry:
        device_id = messages[index].device_id
        if device_id in pending:
            pending[device_id].appendleft(index)
        else:
            pending[device_id] = deque((index,))
