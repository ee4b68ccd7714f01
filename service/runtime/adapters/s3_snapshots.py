"""Shard snapshots in S3: one object per checkpoint, written once, read by the shard's next owner.

Key: ``{prefix}shard={shard}/{sequence padded to 40 digits}.msgpack.gz`` — so a shard's snapshots list
in stream order. Written put-if-absent: a key already taken holds the same states (the core is
deterministic and the key names the position), so a second write, by a retry or a zombie owner, is
dropped. Old snapshots are not needed once a newer checkpoint names a newer one: the template's
lifecycle rule ``shard-snapshots`` expires them after 7 days. An expired one that an idle shard's
checkpoint still names raises ``SnapshotMissingError``; the consumer then reads its devices from the
device table, which an idle shard's flush left at the checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.core.records import padded_sequence
from service.runtime.adapters._errors import CALL_ERRORS, calling, error_code, sink_error
from service.runtime.adapters._s3_put import NOT_FOUND, put_if_absent
from service.runtime.ports import Access, Sink, SnapshotMissingError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

SUFFIX = ".msgpack.gz"
CONTENT_TYPE = "application/gzip"


def snapshot_key(prefix: str, shard_id: str, sequence: str) -> str:
    return f"{prefix}shard={shard_id}/{padded_sequence(sequence)}{SUFFIX}"


class S3SnapshotStore:
    """``SnapshotStore`` on one bucket. Raises ``SinkError`` (sink ``snapshots``, resource the bucket)
    when S3 refuses a read or write or cannot be reached."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "snapshots/") -> None:
        self._client, self._bucket, self._prefix = client, bucket, prefix

    def put(self, shard_id: str, sequence: str, blob: bytes) -> str:
        key = snapshot_key(self._prefix, shard_id, sequence)
        with calling(Sink.SNAPSHOTS, self._bucket):
            put_if_absent(self._client, self._bucket, key, blob, CONTENT_TYPE)
        return key

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except CALL_ERRORS as exc:
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND:
                raise SnapshotMissingError(f"{self._bucket}/{key}", error_code(exc)) from exc
            raise sink_error(Sink.SNAPSHOTS, self._bucket, exc, Access.READ) from exc
        return body
