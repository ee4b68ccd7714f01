"""S3 put-if-absent, shared by the archive and the dead-letter objects.

``put_if_absent`` writes with ``If-None-Match: *``: atomic on S3 and emulators that support it. An
endpoint that answers ``NotImplemented`` gets a HEAD, then a plain PUT when the key is free — not
atomic, but every key written this way has one writer at a time (a shard's lease owner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from service.runtime.adapters._errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_TAKEN = frozenset({"PreconditionFailed", "412"})
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_UNSUPPORTED = frozenset({"NotImplemented", "501"})


def put_if_absent(client: S3Client, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    """True when this call created the object; False when the key already existed (the object is
    left as it was). Raises ``ClientError`` for any other refusal, and the SDK's own errors
    (``BotoCoreError``, e.g. ``EndpointConnectionError``) as they come: the caller wraps them."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ContentType=content_type)
    except ClientError as exc:
        code = error_code(exc)
        if code in _TAKEN:
            return False
        if code not in _UNSUPPORTED:
            raise
        return _head_then_put(client, bucket, key, body, content_type)
    return True


def _head_then_put(client: S3Client, bucket: str, key: str, body: bytes, content_type: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in NOT_FOUND:
            raise
    else:
        return False
    client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return True
