"""The archive on an endpoint without conditional writes (If-None-Match answered NotImplemented):
it checks with HEAD before a plain PUT and still never overwrites an archived object."""

from __future__ import annotations

import gzip
import io
from typing import Any

from botocore.exceptions import ClientError

from service.runtime.adapters.s3_archive import S3Archive
from tests.unit.builders import records, run, telemetry


class S3WithoutConditionalWrites:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str, **kwargs: Any) -> None:  # noqa: N803
        if "IfNoneMatch" in kwargs:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, "PutObject")
        self.puts.append(Key)
        self.objects[Key] = Body

    def head_object(self, *, Bucket: str, Key: str) -> None:  # noqa: N803
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"Body": io.BytesIO(self.objects[Key])}


def test_fallback_writes_once_and_never_overwrites() -> None:
    s3 = S3WithoutConditionalWrites()
    archive = S3Archive(s3, "bucket", "telemetry/")  # type: ignore[arg-type]
    processed = run(records([telemetry(deviceId=f"d{i}") for i in range(3)])).processed

    first = archive.write("shardId-000000000000", processed)
    again = archive.write("shardId-000000000000", processed)

    assert first == again
    assert s3.puts == [first]
    assert len(gzip.decompress(s3.objects[str(first)]).splitlines()) == 3
