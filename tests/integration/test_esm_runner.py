"""Local serverless mode: the event-source-mapping runner feeding the real Lambda shim, against a
real Kinesis API (moto server on 127.0.0.1)."""

from __future__ import annotations

import functools
import gzip
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_shim import handler as shim
from lambda_shim.bootstrap import build_pipeline
from service.tools.esm import EsmConfig, EventSourceMapping, Invocation
from tests.events import LIVE_T0_MS, episode, sample
from tests.integration.conftest import AwsStack, skip_unfaithful_resharding

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]

DEVICES = ("watch-a", "watch-b", "watch-c", "watch-d")


class Stream:
    def __init__(self, aws: AwsStack, endpoint: str, shards: int = 2) -> None:
        self.kinesis = aws.session.client("kinesis", endpoint_url=endpoint)
        self.name = f"telemetry-{uuid.uuid4().hex[:8]}"
        self.kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.name, WaiterConfig={"Delay": 0.2})

    def put(self, items: list[tuple[str, bytes]]) -> dict[str, list[str]]:
        """Sequential PutRecords (moto loses concurrent writes to one shard); sequence numbers by key."""
        by_key: dict[str, list[str]] = defaultdict(list)
        for start in range(0, len(items), 100):
            chunk = items[start : start + 100]
            response = self.kinesis.put_records(
                StreamName=self.name, Records=[{"PartitionKey": k, "Data": d} for k, d in chunk]
            )
            assert response["FailedRecordCount"] == 0
            for (key, _), entry in zip(chunk, response["Records"], strict=True):
                by_key[key].append(entry["SequenceNumber"])
        return by_key


@pytest.fixture
def stream(aws: AwsStack, kinesis_endpoint: str) -> Stream:
    return Stream(aws, kinesis_endpoint)


@pytest.fixture
def failure_queue(aws: AwsStack) -> str:
    return aws.sqs.create_queue(QueueName=f"esm-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]


Recorder = dict[str, list[str]]


@pytest.fixture
def pipeline(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim's runtime on the test's session, built at the first invocation as in Lambda (so
    event hooks a test registers on the session before that reach its clients)."""
    monkeypatch.setattr(shim, "_runtime", functools.cache(lambda: build_pipeline(aws.settings, aws.session)))


def recording(
    seen: Recorder, inner: Callable[[dict[str, Any], Any], Any]
) -> Callable[[dict[str, Any], Any], Any]:
    """The shim, noting which sequence numbers of each device every invocation carried."""

    def handler(event: dict[str, Any], context: Any) -> Any:
        for record in event["Records"]:
            seen[record["kinesis"]["partitionKey"]].append(record["kinesis"]["sequenceNumber"])
        return inner(event, context)

    return handler


def run_until(mapping: EventSourceMapping, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    with mapping:
        while not done():
            assert time.monotonic() < deadline, f"runner did not finish in {timeout_s} s: {mapping.stats}"
            time.sleep(0.2)


def archived(aws: AwsStack) -> list[dict[str, Any]]:
    bodies = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix).values()
    return [json.loads(line) for body in bodies for line in gzip.decompress(body).splitlines()]


def telemetry(device_id: str, count: int, bpm: int = 72) -> list[tuple[str, bytes]]:
    return [
        (device_id, json.dumps(sample(device_id, 5 * i, bpm + i % 3, seq=i, base_ms=LIVE_T0_MS)).encode())
        for i in range(count)
    ]


def sqs_bodies(aws: AwsStack, queue_url: str) -> list[dict[str, Any]]:
    return [m["body"] for m in aws.drain(queue_url)]


def mapping_for(
    stream: Stream, handler: Any, failures: str, aws: AwsStack, **config: Any
) -> EventSourceMapping:
    def destination(body: dict[str, Any]) -> None:
        aws.sqs.send_message(QueueUrl=failures, MessageBody=json.dumps(body))

    return EventSourceMapping(
        stream.kinesis,
        stream.name,
        Invocation(handler, destination),
        EsmConfig(**({"batch_size": 10} | config)),
        resync_s=0.5,
        idle_poll_s=0.05,
    )


def test_every_record_once_in_device_order_and_poison_to_the_dead_letter_queue(
    aws: AwsStack, stream: Stream, failure_queue: str, pipeline: None
) -> None:
    items = [pair for device in DEVICES for pair in telemetry(device, 15)]
    too_fast = json.dumps(sample("watch-c", 1, 900, base_ms=LIVE_T0_MS)).encode()
    items[7:7] = [("watch-b", b"\xff not json"), ("watch-c", too_fast)]
    sequences = stream.put(items)
    seen: Recorder = defaultdict(list)

    run_until(
        mapping_for(stream, recording(seen, shim.handler), failure_queue, aws),
        lambda: len(archived(aws)) >= 60,
    )

    lines = archived(aws)
    assert Counter((line["deviceId"], line["sequenceNumber"]) for line in lines).most_common(1)[0][1] == 1
    assert len(lines) == 60
    for device in DEVICES:
        delivered = seen[device]
        assert delivered == sorted(delivered, key=int), f"{device} delivered out of order"
        assert delivered == sequences[device], f"{device}: every record, poison included, once"
    rejects = sqs_bodies(aws, aws.settings.dead_letter_queue_url)
    assert sorted(r["reason"] for r in rejects) == ["invalid_utf8", "out_of_range"]
    assert sqs_bodies(aws, failure_queue) == []


def test_a_failing_sink_makes_the_runner_retry_from_the_lowest_failed_sequence_number(
    aws: AwsStack, stream: Stream, failure_queue: str, pipeline: None
) -> None:
    refusals = {"left": 2}

    def refuse_publish(params: dict[str, Any], **_: Any) -> None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "Publish")

    aws.session.events.register("before-parameter-build.sns.Publish", refuse_publish)
    racing = [
        ("watch-racing", json.dumps(s).encode())
        for s in episode("watch-racing", 0, 60, 132, base_ms=LIVE_T0_MS)
    ]
    calm = telemetry("watch-calm", 13)
    sequences = stream.put([pair for pair in zip(racing, calm, strict=False) for pair in pair])
    seen: Recorder = defaultdict(list)

    run_until(
        mapping_for(stream, recording(seen, shim.handler), failure_queue, aws, batch_size=50),
        lambda: len(archived(aws)) >= 26 and refusals["left"] == 0,
    )

    racing_seqs = sequences["watch-racing"]
    # Delivered three times from the racing device's first record: two refusals, then success.
    assert seen["watch-racing"] == racing_seqs * 3
    lines = archived(aws)
    assert Counter((line["deviceId"], line["sequenceNumber"]) for line in lines).most_common(1)[0][1] == 1
    alerts = [a["body"] for a in aws.drain(aws.alert_queue_url)]
    assert [(a["deviceId"], a["type"]) for a in alerts] == [("watch-racing", "TACHYCARDIA")]
    state = aws.dynamodb.get_item(
        TableName=aws.settings.device_state_table,
        Key={"deviceId": {"S": "watch-racing"}},
        ConsistentRead=True,
    )["Item"]
    assert state["lastSeq"]["S"] == racing_seqs[-1].zfill(40)


def test_a_batch_that_keeps_failing_is_bisected_and_only_its_culprit_goes_to_the_destination(
    aws: AwsStack, stream: Stream, failure_queue: str, pipeline: None
) -> None:
    items = telemetry("watch-a", 12)
    items[5] = ("watch-a", b"CRASH")
    sequences = stream.put(items)
    culprit = sequences["watch-a"][5]

    def crashing(event: dict[str, Any], context: Any) -> Any:
        if any(r["kinesis"]["sequenceNumber"] == culprit for r in event["Records"]):
            raise RuntimeError("function error")
        return shim.handler(event, context)

    run_until(
        mapping_for(
            stream, crashing, failure_queue, aws, batch_size=12, bisect_on_error=True, max_retry_attempts=1
        ),
        lambda: len(archived(aws)) >= 11,
    )

    [failure] = sqs_bodies(aws, failure_queue)
    info = failure["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        culprit,
        culprit,
        1,
    )
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert sorted(line["sequenceNumber"] for line in archived(aws)) == sorted(
        s for s in sequences["watch-a"] if s != culprit
    )


def test_a_full_redelivery_changes_no_sink(
    aws: AwsStack, stream: Stream, failure_queue: str, pipeline: None
) -> None:
    stream.put([pair for device in DEVICES[:2] for pair in telemetry(device, 10, bpm=130)])
    run_until(mapping_for(stream, shim.handler, failure_queue, aws), lambda: len(archived(aws)) >= 20)
    objects = aws.objects(aws.settings.archive_bucket)
    states = sorted(repr(sorted(i.items())) for i in aws.scan(aws.settings.device_state_table))
    alerts = aws.drain(aws.alert_queue_url)
    assert len(alerts) == 2

    second = mapping_for(stream, shim.handler, failure_queue, aws)  # a new mapping reads from TRIM_HORIZON
    run_until(second, lambda: second.stats.records_delivered >= 20)

    assert aws.objects(aws.settings.archive_bucket) == objects
    assert sorted(repr(sorted(i.items())) for i in aws.scan(aws.settings.device_state_table)) == states
    assert aws.drain(aws.alert_queue_url) == []


def test_after_a_split_children_start_only_when_their_parent_is_finished(
    aws: AwsStack, stream: Stream, failure_queue: str, pipeline: None, backend: str
) -> None:
    skip_unfaithful_resharding(backend, unfaithful=("ministack",))  # moto's copies still reach the archive
    before = stream.put([pair for device in DEVICES for pair in telemetry(device, 6)])
    parent = stream.kinesis.list_shards(StreamName=stream.name)["Shards"][0]
    low, high = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    stream.kinesis.split_shard(
        StreamName=stream.name, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    stream.kinesis.get_waiter("stream_exists").wait(StreamName=stream.name, WaiterConfig={"Delay": 0.2})
    later = [
        (device, json.dumps(sample(device, 30 + 5 * i, 71, seq=6 + i, base_ms=LIVE_T0_MS)).encode())
        for device in DEVICES
        for i in range(6)
    ]
    after = stream.put(later)
    order: list[tuple[str, str]] = []  # (shard, device) in invocation order

    def noting(event: dict[str, Any], context: Any) -> Any:
        order.extend((r["eventID"].partition(":")[0], r["kinesis"]["partitionKey"]) for r in event["Records"])
        return shim.handler(event, context)

    run_until(mapping_for(stream, noting, failure_queue, aws), lambda: len(archived(aws)) >= 48)

    lines = archived(aws)
    assert len(lines) == 48
    assert Counter((line["deviceId"], line["sequenceNumber"]) for line in lines).most_common(1)[0][1] == 1
    parent_id = parent["ShardId"]
    last_parent = max(i for i, (shard, _) in enumerate(order) if shard == parent_id)
    children = {
        s["ShardId"]
        for s in stream.kinesis.list_shards(StreamName=stream.name)["Shards"]
        if s.get("ParentShardId") == parent_id
    }
    assert children
    assert all(i > last_parent for i, (shard, _) in enumerate(order) if shard in children)
    for device in DEVICES:
        state = aws.dynamodb.get_item(
            TableName=aws.settings.device_state_table, Key={"deviceId": {"S": device}}, ConsistentRead=True
        )["Item"]
        assert state["lastSeq"]["S"] == after[device][-1].zfill(40), (
            f"{device} did not end on its last record"
        )
    assert all(before[d] for d in DEVICES)
