"""Window handoffs (``core.window_handoff``): one S3 object per shard, and the shard's line from Kinesis.

Key: ``{prefix}shard={shard}/handoff.msgpack.gz``, replaced by every final invocation of the shard's
windows (a plain PUT: one invocation of a shard runs at a time, and a retry writes the same bytes). Not
under the snapshots' prefix, whose lifecycle rule expires objects: a handoff of a shard that went quiet
is its devices' only record until the shard's next window. Both raise ``SinkError`` with sink
``snapshots`` (a handoff is Lambda mode's shard snapshot): the resource is the bucket, or the stream
for ``ListShards``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.core.window_handoff import HashRange
from service.runtime.adapters._errors import CALL_ERRORS, calling, error_code, sink_error
from service.runtime.adapters._s3_put import NOT_FOUND
from service.runtime.ports import Access, ShardLine, Sink

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CONTENT_TYPE = "application/gzip"


def handoff_key(prefix: str, shard_id: str) -> str:
    return f"{prefix}shard={shard_id}/handoff.msgpack.gz"


class S3HandoffStore:
    """``HandoffStore`` on one bucket."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client, self._bucket, self._prefix = client, bucket, prefix

    def get(self, shard_id: str) -> bytes | None:
        """Listed first: S3 answers a GET of a missing key with 403, not 404, unless the caller may
        list the bucket, and the template lets the function list the handoffs' prefix only."""
        key = handoff_key(self._prefix, shard_id)
        try:
            listed = self._client.list_objects_v2(Bucket=self._bucket, Prefix=key, MaxKeys=1)
            if not any(entry["Key"] == key for entry in listed.get("Contents", [])):
                return None
            body: bytes = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except CALL_ERRORS as exc:
            if isinstance(exc, ClientError) and error_code(exc) in NOT_FOUND:
                return None  # gone between the listing and the read
            raise sink_error(Sink.SNAPSHOTS, self._bucket, exc, Access.READ) from exc
        return body

    def put(self, shard_id: str, blob: bytes) -> None:
        key = handoff_key(self._prefix, shard_id)
        with calling(Sink.SNAPSHOTS, self._bucket):
            self._client.put_object(Bucket=self._bucket, Key=key, Body=blob, ContentType=CONTENT_TYPE)

    def shards(self) -> list[str]:
        head, tail = handoff_key(self._prefix, "\0").split("\0")
        found: list[str] = []
        with calling(Sink.SNAPSHOTS, self._bucket, Access.READ):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=head)
            for page in pages:
                keys = (entry["Key"] for entry in page.get("Contents", []))
                found += [key[len(head) : -len(tail)] for key in keys if key.endswith(tail)]
        return sorted(found)


class KinesisShardLineage:
    """``ShardLineage`` from ``ListShards`` (every shard, closed ones included, within the retention).
    ``client`` makes the Kinesis client on first use: a shard asks once in its life (its first window)."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._make_client = functools.cache(client)

    def of(self, stream: str, shard_id: str) -> ShardLine:
        name = stream.rpartition("/")[2] if stream.startswith("arn:") else stream
        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamName": name}
        with calling(Sink.SNAPSHOTS, name, Access.READ):
            while True:
                page = self._make_client().list_shards(**request)
                shards += page.get("Shards", [])
                if not page.get("NextToken"):
                    break
                request = {"NextToken": page["NextToken"]}
        for shard in shards:
            if shard["ShardId"] == shard_id:
                parents = (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
                keys = shard["HashKeyRange"]
                hash_range = HashRange(int(keys["StartingHashKey"]), int(keys["EndingHashKey"]))
                return ShardLine(tuple(p for p in parents if p), hash_range)
        return ShardLine((), HashRange(0, 2**128 - 1))  # not listed: a shard past the retention
