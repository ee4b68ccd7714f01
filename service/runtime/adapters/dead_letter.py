"""Dead-letter stores: rejects with their raw bytes (base64), shard, sequence number and reason.

A reject's identity is its position: shard, sequence number and sub-sequence number. Both stores
keep one copy per position across owners, so a new lease owner that replays a batch the killed
owner had already dead-lettered stores nothing twice:

- ``S3DeadLetterStore`` writes one object per reject at a key fixed by its position, put-if-absent
  (``If-None-Match: *``): a key already taken counts as stored and is left as it was. Exact at any
  distance in time.
- ``SqsDeadLetterStore`` sends ``Reject.to_json`` bodies in batches; a body too large for a message
  goes to an ``overflow`` S3 store and the queue gets a pointer to it. On a FIFO queue (a name ending
  ``.fifo``, as the template's) each message carries ``MessageGroupId`` = the shard and
  ``MessageDeduplicationId`` = a digest of the position (``position_id``), the pointer too. SQS drops
  a send whose id it accepted in the **last 5 minutes**, even when that message was received and
  deleted since: a takeover (≤ 15 s) never stores twice; a replay more than 5 minutes after the first
  send (a long outage, a reset checkpoint) can. On a standard queue nothing is deduplicated.

Rejects that could not be stored come back as ``FailedRejects`` with their causes (sink
``dead_letter``, resource the bucket or the queue URL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import msgspec

from service.core import Reject
from service.runtime.adapters._errors import TRANSIENT_CODES, calling
from service.runtime.adapters._s3_put import put_if_absent
from service.runtime.ports import FailedRejects, Sink, SinkError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SQS_BATCH_LIMIT = 10
# The classic SQS limit; queues created since 2025 may allow 1 MiB (their MaximumMessageSize).
SQS_MAX_MESSAGE_BYTES = 256 * 1024
_ATTRIBUTE_ALLOWANCE = 512  # room for the message attributes, which count towards the size


def position_id(reject: Reject) -> str:
    """A deterministic id of the reject's position (64 hex digits; SQS allows 128 characters)."""
    sub = "" if reject.sub_sequence_number is None else str(reject.sub_sequence_number)
    position = f"{reject.shard_id}/{reject.sequence_number}/{sub}"
    return hashlib.sha256(position.encode("utf-8")).hexdigest()


def reject_key(prefix: str, reject: Reject) -> str:
    position = reject.sequence_number
    if reject.sub_sequence_number is not None:
        position += f".{reject.sub_sequence_number}"
    return f"{prefix}shard={reject.shard_id}/{position}.json"


class S3DeadLetterStore:
    """``DeadLetterStore`` on one bucket: one JSON object per reject position, never overwritten."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, rejects: Sequence[Reject]) -> FailedRejects:
        failed: list[Reject] = []
        causes: list[SinkError] = []
        for reject in rejects:
            try:
                self.put_one(reject)
            except SinkError as exc:
                failed.append(reject)
                causes.append(exc)
        return FailedRejects(failed, causes)

    def put_one(self, reject: Reject) -> str:
        """Store one reject unless its position is already stored; return its key. Raises
        ``SinkError``."""
        key = reject_key(self._prefix, reject)
        with calling(Sink.DEAD_LETTER, self._bucket):
            put_if_absent(self._client, self._bucket, key, reject.to_json(), "application/json")
        return key


class SqsDeadLetterStore:
    """``DeadLetterStore`` on one SQS queue (FIFO: deduplicated per position for 5 minutes). Raises
    ``SinkError`` when the queue refuses a whole call; entries SQS reports as failed are returned."""

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        overflow: S3DeadLetterStore | None = None,
        max_message_bytes: int = SQS_MAX_MESSAGE_BYTES,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._fifo = queue_url.endswith(".fifo")  # SQS requires the suffix of every FIFO queue name
        self._overflow = overflow
        self._max_body = max_message_bytes - _ATTRIBUTE_ALLOWANCE
        self._max_batch = max_message_bytes

    def put(self, rejects: Sequence[Reject]) -> FailedRejects:
        failed: list[Reject] = []
        causes: list[SinkError] = []
        sendable: list[tuple[Reject, str]] = []
        for reject in rejects:
            try:
                sendable.append((reject, self._body(reject)))
            except SinkError as exc:
                failed.append(reject)
                causes.append(exc)
        for batch in self._batches(sendable):
            refused = self._send(batch)
            failed.extend(refused)
            causes.extend(refused.causes)
        return FailedRejects(failed, causes)

    def _body(self, reject: Reject) -> str:
        """The message body, or a pointer to the overflow store; ``SinkError`` when it cannot be sent."""
        body = reject.to_json().decode("utf-8")
        if len(body.encode("utf-8")) <= self._max_body:
            return body
        if self._overflow is None:
            raise SinkError(Sink.DEAD_LETTER, "MessageTooLong", self._queue_url, permanent=True)
        key = self._overflow.put_one(reject)
        pointer = {
            "reason": reject.reason.value,
            "shardId": reject.shard_id,
            "sequenceNumber": reject.sequence_number,
            "subSequenceNumber": reject.sub_sequence_number,
            "overflow": {"bucket": self._overflow.bucket, "key": key},
        }
        return msgspec.json.encode(pointer).decode("utf-8")

    def _batches(self, entries: list[tuple[Reject, str]]) -> Iterator[list[tuple[Reject, str]]]:
        batch: list[tuple[Reject, str]] = []
        size = 0
        for reject, body in entries:
            length = len(body.encode("utf-8")) + _ATTRIBUTE_ALLOWANCE
            if batch and (len(batch) == SQS_BATCH_LIMIT or size + length > self._max_batch):
                yield batch
                batch, size = [], 0
            batch.append((reject, body))
            size += length
        if batch:
            yield batch

    def _send(self, batch: list[tuple[Reject, str]]) -> FailedRejects:
        entries = [self._entry(str(index), reject, body) for index, (reject, body) in enumerate(batch)]
        with calling(Sink.DEAD_LETTER, self._queue_url):
            response = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        refused = response.get("Failed", [])
        causes = [
            SinkError(
                Sink.DEAD_LETTER,
                entry["Code"],
                self._queue_url,
                permanent=entry["SenderFault"] and entry["Code"] not in TRANSIENT_CODES,
            )
            for entry in refused
        ]
        return FailedRejects((batch[int(entry["Id"])][0] for entry in refused), causes)

    def _entry(self, entry_id: str, reject: Reject, body: str) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": entry_id,
            "MessageBody": body,
            "MessageAttributes": {
                "reason": {"DataType": "String", "StringValue": reject.reason.value},
                "shardId": {"DataType": "String", "StringValue": reject.shard_id},
            },
        }
        if self._fifo:
            entry["MessageGroupId"] = reject.shard_id
            entry["MessageDeduplicationId"] = position_id(reject)
        return entry
