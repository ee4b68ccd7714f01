"""Enhanced fan-out against a real SubscribeToShard endpoint (MiniStack on 127.0.0.1 by default, or
LocalStack): registering the consumer, reading a 2-shard stream through ``FanOutReader`` in order, and
subscribing again from where a subscription ended.

Reads are bounded by counts, not durations: a read waits at most ``WAIT_S`` for an event, and a test
gives up after ``MAX_READS`` reads that brought nothing new.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import boto3
import pytest
from botocore.exceptions import ClientError

from service.runtime.adapters._errors import error_code
from service.runtime.consumer.fanout import FanOutReader, register_consumer
from service.runtime.consumer.leases import Sentinel
from tests.integration.conftest import DUMMY_KEY, REGION, AwsStack
from tests.integration.consumer_rig import ConsumerRig, wait_drained

pytestmark = pytest.mark.integration
WAIT_S = 0.5
MAX_READS = 120  # empty or refused reads in a row before a test gives up (about a minute)


def arun(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 300))


def sync_kinesis(endpoint: str) -> Any:
    session = boto3.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)
    return session.client("kinesis", endpoint_url=endpoint)


def async_session() -> aioboto3.Session:
    return aioboto3.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)


def new_stream(client: Any, shards: int) -> tuple[str, str]:
    """A fresh ACTIVE stream: (name, ARN)."""
    name = f"efo-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(MAX_READS):
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return name, str(summary["StreamARN"])
        asyncio.run(asyncio.sleep(WAIT_S))
    raise AssertionError(f"stream {name} never became ACTIVE")


def put(client: Any, stream: str, first: int, count: int) -> dict[str, list[tuple[str, bytes]]]:
    """Put ``count`` telemetry records one by one; (sequence number, data) per shard, in put order."""
    by_shard: dict[str, list[tuple[str, bytes]]] = {}
    for n in range(first, first + count):
        device = f"dev-{n % 7}"
        data = json.dumps({"deviceId": device, "seq": n}).encode()
        response = client.put_record(StreamName=stream, Data=data, PartitionKey=device)
        by_shard.setdefault(response["ShardId"], []).append((response["SequenceNumber"], data))
    return by_shard


async def read_until(reader: FanOutReader, count: int) -> list[tuple[str, bytes]]:
    """Read until ``count`` records came, retrying refused subscriptions as the worker would."""
    out: list[tuple[str, bytes]] = []
    idle = 0
    while len(out) < count:
        try:
            result = await reader.read()
        except ClientError as exc:  # e.g. ResourceInUseException: the previous subscription is still open
            if error_code(exc) not in {"ResourceInUseException", "LimitExceededException"}:
                raise
            result = None
            await asyncio.sleep(WAIT_S)
        if result is not None and result.records:
            idle = 0
            out += [(r.sequence_number, r.data) for r in result.records]
        else:
            idle += 1
            assert idle < MAX_READS, f"only {len(out)} of {count} records arrived"
    return out


def test_two_shards_are_read_in_order_through_enhanced_fan_out(fan_out_endpoint: str) -> None:
    client = sync_kinesis(fan_out_endpoint)
    stream, stream_arn = new_stream(client, shards=2)
    first = put(client, stream, 0, 40)
    assert len(first) == 2, "the partition keys spread over both shards"

    async def scenario() -> None:
        async with async_session().client("kinesis", endpoint_url=fan_out_endpoint) as kinesis:
            consumer_arn = await register_consumer(kinesis, stream_arn, "vitalstream", poll_s=WAIT_S)
            again = await register_consumer(kinesis, stream_arn, "vitalstream", poll_s=WAIT_S)
            assert again == consumer_arn, "a registered consumer is reused"
            readers = {
                shard: FanOutReader(kinesis, consumer_arn, shard, Sentinel.TRIM_HORIZON, wait_s=WAIT_S)
                for shard in sorted(first)
            }
            try:
                for shard, reader in readers.items():
                    assert await read_until(reader, len(first[shard])) == first[shard]
                later = put(client, stream, 40, 20)  # pushed to the open subscriptions
                for shard, reader in readers.items():
                    assert await read_until(reader, len(later.get(shard, []))) == later.get(shard, [])
                    assert reader.position == (later.get(shard) or first[shard])[-1][0]
            finally:
                for reader in readers.values():
                    await reader.close()

    arun(scenario())


@dataclass
class EndingAfter:
    """The real client, but every subscription ends after ``events`` events, as an AWS one does after
    five minutes: the reader must subscribe again from where it was."""

    kinesis: Any
    events: int
    starts: list[dict[str, str]] = field(default_factory=list)

    async def register_stream_consumer(self, **kwargs: Any) -> dict[str, Any]:
        return dict(await self.kinesis.register_stream_consumer(**kwargs))

    async def describe_stream_consumer(self, **kwargs: Any) -> dict[str, Any]:
        return dict(await self.kinesis.describe_stream_consumer(**kwargs))

    async def subscribe_to_shard(self, **kwargs: Any) -> dict[str, Any]:
        response = await self.kinesis.subscribe_to_shard(**kwargs)
        self.starts.append(dict(kwargs["StartingPosition"]))
        return {**response, "EventStream": _Truncated(response["EventStream"], self.events)}


@dataclass
class _Truncated:
    stream: Any
    events: int

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        left = self.events
        async for event in self.stream:
            yield event
            left -= 1
            if left == 0:
                return

    def close(self) -> None:
        self.stream.close()


def test_a_subscription_that_ends_is_renewed_from_its_continuation_point(fan_out_endpoint: str) -> None:
    client = sync_kinesis(fan_out_endpoint)
    stream, stream_arn = new_stream(client, shards=1)

    async def scenario() -> None:
        async with async_session().client("kinesis", endpoint_url=fan_out_endpoint) as real:
            kinesis = EndingAfter(real, events=1)
            consumer_arn = await register_consumer(kinesis, stream_arn, "vitalstream", poll_s=WAIT_S)
            (shard,) = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
            reader = FanOutReader(kinesis, consumer_arn, shard, Sentinel.TRIM_HORIZON, wait_s=WAIT_S)
            try:
                delivered: list[tuple[str, bytes]] = []
                expected: list[tuple[str, bytes]] = []
                for round_ in range(3):  # each round's records come through a new subscription
                    batch = put(client, stream, round_ * 5, 5)[shard]
                    expected += batch
                    delivered += await read_until(reader, len(batch))
                assert delivered == expected, "every record once, in order, across subscriptions"
                assert reader.subscriptions >= 3
                after = [s.get("SequenceNumber") for s in kinesis.starts[1:]]
                assert after[0] == expected[4][0], "the second subscription starts after the first's last"
                assert all(s["Type"] == "AFTER_SEQUENCE_NUMBER" for s in kinesis.starts[1:])
            finally:
                await reader.close()

            # A new owner of the shard starts from a checkpoint in the middle: exactly the rest.
            resumed = FanOutReader(real, consumer_arn, shard, expected[6][0], wait_s=WAIT_S)
            try:
                assert await read_until(resumed, len(expected) - 7) == expected[7:]
            finally:
                await resumed.close()

    arun(scenario())


def test_the_consumer_reads_through_enhanced_fan_out_end_to_end(
    aws: AwsStack, fan_out_endpoint: str, tmp_path: Path
) -> None:
    """``vitalstream consume`` with ``VITALSTREAM_ENHANCED_FAN_OUT=true``: Kinesis on the SubscribeToShard
    endpoint, the lease table and every sink on the test stack; nothing lost, nothing archived twice."""
    rig = ConsumerRig(aws, fan_out_endpoint, 2, tmp_path / "rig")
    try:
        (replica,) = rig.replicas.start(
            1,
            extra_env={
                "VITALSTREAM_ENHANCED_FAN_OUT": "true",
                "VITALSTREAM_CONSUMER_NAME": f"vitalstream-{uuid.uuid4().hex[:6]}",
            },
        )
        rig.replicas.wait_ready()
        feed = rig.feed(devices=10, rate=10)
        feed.put(60)
        back = wait_drained(rig, feed, timeout_s=90)
        feed.put(20)  # pushed to the open subscriptions
        back = wait_drained(rig, feed, timeout_s=90)
        assert back.duplicated == 0
        assert back.order_breaks == []
        modes = {entry.get("mode") for entry in replica.logs() if "mode" in entry}
        assert modes == {"enhanced_fan_out"}
    finally:
        rig.close()
