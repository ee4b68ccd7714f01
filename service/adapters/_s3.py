"""S3 writes shared by the adapters: put-if-absent, with a fallback for endpoints without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.adapters._errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

TAKEN = frozenset({"PreconditionFailed", "412"})
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_UNSUPPORTED = frozenset({"NotImplemented", "501"})


def put_if_absent(client: S3Client, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    """Create the object (``If-None-Match: *``); True when this call created it, False when the key
    already existed. Raises ``ClientError`` for any other refusal."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ContentType=content_type)
    except ClientError as exc:
        code = error_code(exc)
        if code in TAKEN:
            return False
        if code not in _UNSUPPORTED:
            raise
        return _head_then_put(client, bucket, key, body, content_type)
    return True


def _head_then_put(client: S3Client, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    """For endpoints without conditional writes: not atomic, but a shard's keys have one writer."""
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in NOT_FOUND:
            raise
    else:
        return False
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return True
