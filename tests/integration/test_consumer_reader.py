"""``PollingReader`` on a real Kinesis endpoint: from a checkpoint, and across an expired iterator."""

from __future__ import annotations

import asyncio
from typing import Any

import aioboto3
import pytest
from botocore.exceptions import ClientError

from service.runtime.consumer.leases import Sentinel
from service.runtime.consumer.reader import PollingReader, ReadResult
from tests.integration.conftest import DUMMY_KEY, REGION

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]


class ExpiringOnce:
    """The aioboto3 client, except that one chosen GetRecords call fails as an expired iterator would."""

    def __init__(self, client: Any, expire_at_call: int) -> None:
        self._client, self._expire_at, self.calls = client, expire_at_call, 0

    async def get_records(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == self._expire_at:
            error = {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}}
            raise ClientError(error, "GetRecords")  # type: ignore[arg-type]
        return dict(await self._client.get_records(**kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def read_all(reader: PollingReader, want: int, max_reads: int = 50) -> tuple[list[str], int]:
    got: list[str] = []
    empty = 0
    for _ in range(max_reads):
        result: ReadResult = await reader.read()
        got += [r.sequence_number for r in result.records]
        empty += not result.records
        if len(got) >= want:
            break
    return got, empty


def test_an_expired_iterator_resumes_after_the_last_record_handed_out(
    kinesis_stream: tuple[Any, str], kinesis_endpoint: str
) -> None:
    client, stream = kinesis_stream
    shard = client.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    sent = [
        client.put_record(StreamName=stream, Data=f"{i}".encode(), PartitionKey="p", ExplicitHashKey="0")[
            "SequenceNumber"
        ]
        for i in range(10)
    ]

    async def scenario() -> None:
        session = aioboto3.Session(
            aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
        )
        async with session.client("kinesis", endpoint_url=kinesis_endpoint) as kinesis:
            wrapped = ExpiringOnce(kinesis, expire_at_call=3)
            reader = PollingReader(wrapped, stream, shard, Sentinel.TRIM_HORIZON, max_records=3)
            got, empty = await read_all(reader, len(sent))
            assert got == sent  # no gap and no repeat across the expiry
            assert empty >= 1  # the expired read handed out nothing

            from_checkpoint = PollingReader(kinesis, stream, shard, sent[4], max_records=100)
            rest, _ = await read_all(from_checkpoint, 5)
            assert rest == sent[5:]  # a checkpoint is resumed AFTER_SEQUENCE_NUMBER

    asyncio.run(scenario())
