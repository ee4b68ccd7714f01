"""Adapter contracts that the handler tests cannot reach: conflicting archive spans, forward-only
state writes, throttled reads, oversized and repeated dead letters, alerts already published."""

from __future__ import annotations

import gzip
import json
import uuid
from collections import Counter
from typing import Any

import msgspec
import pytest

from service.core import (
    DEFAULT_CONFIG,
    Detector,
    KinesisRecord,
    decode_records,
    padded_sequence,
    process_batch,
)
from service.core.records import ProcessedRecord
from service.core.window_handoff import HashRange
from service.runtime.adapters import (
    DynamoDeviceStateStore,
    S3Archive,
    S3DeadLetterStore,
    SnsAlertPublisher,
    SqsDeadLetterStore,
)
from service.runtime.adapters.window_handoffs import KinesisShardLineage, S3HandoffStore
from service.runtime.ports import ShardLine, Sink, SinkError
from tests.events import SHARD_ID, T0_MS, episode, sample, sequence
from tests.integration.conftest import AwsStack

pytestmark = pytest.mark.integration


def kinesis_records(items: list[dict[str, Any] | bytes], positions: list[int]) -> list[KinesisRecord]:
    return [
        KinesisRecord(
            item if isinstance(item, bytes) else json.dumps(item).encode(), SHARD_ID, sequence(p), T0_MS
        )
        for item, p in zip(items, positions, strict=True)
    ]


def processed(items: list[dict[str, Any]], positions: list[int]) -> list[ProcessedRecord]:
    batch = decode_records(kinesis_records(list(items), positions))
    return process_batch(batch, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000).processed


def archived_positions(aws: AwsStack) -> list[str]:
    bodies = aws.objects(aws.settings.archive_bucket).values()
    return sorted(
        json.loads(line)["sequenceNumber"] for b in bodies for line in gzip.decompress(b).splitlines()
    )


def test_archive_retry_over_the_same_span_adds_only_the_missing_records(aws: AwsStack) -> None:
    archive = S3Archive(aws.s3, aws.settings.archive_bucket, "telemetry/")
    x1, a2, x3 = processed([sample("x", 0, 70), sample("a", 0, 80), sample("x", 5, 71)], [1, 2, 3])

    first = archive.write(SHARD_ID, [x1, x3])  # a's alert failed: a2 held back
    again = archive.write(SHARD_ID, [x1, a2, x3])  # x's state write failed too: all redelivered
    third = archive.write(SHARD_ID, [x1, a2, x3])

    assert first is not None
    assert first.endswith(f"{padded_sequence(sequence(1))}-{padded_sequence(sequence(3))}.jsonl.gz")
    assert again == third != first
    assert archived_positions(aws) == [sequence(1), sequence(2), sequence(3)]


def test_archive_object_is_byte_deterministic_and_never_overwritten(aws: AwsStack) -> None:
    archive = S3Archive(aws.s3, aws.settings.archive_bucket, "")
    records = processed([sample("x", 0, 70), sample("x", 5, 71)], [1, 2])
    key = archive.write(SHARD_ID, records)
    assert key is not None
    body = aws.objects(aws.settings.archive_bucket)[key]
    assert archive.write(SHARD_ID, records) == key
    assert aws.objects(aws.settings.archive_bucket) == {key: body}
    assert archive.write(SHARD_ID, []) is None


def test_state_write_only_moves_forward(aws: AwsStack) -> None:
    store = DynamoDeviceStateStore(aws.dynamodb, aws.settings.device_state_table)
    records = episode("x", 0, 10, 70)
    batch = decode_records(kinesis_records(list(records), [1, 2, 3]))
    result = process_batch(batch, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000)
    latest = result.processed[-1]
    assert store.save(result.states, {"x": latest}) == set()

    older = decode_records(kinesis_records([records[0]], [1]))
    stale = process_batch(older, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000)
    assert store.save(stale.states, {"x": stale.processed[0]}) == set()  # behind: counts as done

    loaded = store.load(["x", "never-seen"])
    assert loaded.unavailable == frozenset()
    assert set(loaded.states) == {"x"}
    assert loaded.states["x"].last_sequence == sequence(3)


def test_state_read_retries_unprocessed_keys_then_gives_up(aws: AwsStack) -> None:
    store = DynamoDeviceStateStore(aws.dynamodb, aws.settings.device_state_table, sleep=lambda _: None)
    batch = decode_records(kinesis_records([sample("x", 0, 70), sample("y", 0, 71)], [1, 2]))
    result = process_batch(batch, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000)
    assert store.save(result.states, {}) == set()
    throttled: dict[str, int] = {"x": 2, "y": 99}  # x is throttled twice, y every time

    def throttle(parsed: dict[str, Any], **_: Any) -> None:
        table = aws.settings.device_state_table
        items = parsed.get("Responses", {}).get(table, [])
        held = [i for i in items if throttled.get(i["deviceId"]["S"], 0) > 0]
        for item in held:
            throttled[item["deviceId"]["S"]] -= 1
        parsed["Responses"][table] = [i for i in items if i not in held]
        if held:
            parsed["UnprocessedKeys"] = {table: {"Keys": [{"deviceId": i["deviceId"]} for i in held]}}

    aws.dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", throttle)
    loaded = store.load(["x", "y"])
    assert set(loaded.states) == {"x"}
    assert loaded.unavailable == frozenset({"y"})


def test_oversized_dead_letter_goes_to_s3_with_a_pointer(aws: AwsStack) -> None:
    big = json.dumps({"deviceId": "x", "padding": "p" * 4000}).encode()  # no timestamp: a reject
    rejects = decode_records(kinesis_records([big, b"nope"], [1, 2])).rejects
    overflow = S3DeadLetterStore(aws.s3, aws.settings.archive_bucket, "dead-letter/")
    dlq = aws.settings.dead_letter_queue_url

    assert SqsDeadLetterStore(aws.sqs, dlq, max_message_bytes=2048).put(rejects) == [rejects[0]]
    assert [m["body"]["sequenceNumber"] for m in aws.drain(dlq)] == [sequence(2)]

    assert SqsDeadLetterStore(aws.sqs, dlq, overflow=overflow, max_message_bytes=2048).put(rejects) == []
    (pointer,) = aws.drain(dlq)  # the small one was stored by the first call: not sent again
    assert pointer["body"]["overflow"]["key"] == f"dead-letter/shard={SHARD_ID}/{sequence(1)}.json"
    stored = aws.objects(aws.settings.archive_bucket, "dead-letter/")[pointer["body"]["overflow"]["key"]]
    assert json.loads(stored)["reason"] == pointer["body"]["reason"] == pointer["attributes"]["reason"]


def test_a_dead_letter_is_stored_once_per_position_whoever_sends_it(aws: AwsStack) -> None:
    """Two owners of one shard (the killed one and its successor) send the same rejects: the queue
    holds each position once, also when the first copies were already received and deleted."""
    shard_a = decode_records(kinesis_records([b"nope", b"[1]", b"{}"], [1, 2, 3])).rejects
    shard_b = [msgspec.structs.replace(r, shard_id="shardId-000000000001") for r in shard_a]
    dlq = aws.settings.dead_letter_queue_url
    old_owner, new_owner = SqsDeadLetterStore(aws.sqs, dlq), SqsDeadLetterStore(aws.sqs, dlq)

    assert old_owner.put(shard_a + shard_b) == []
    assert new_owner.put(shard_a) == []
    first = aws.drain(dlq)
    assert new_owner.put(shard_b + shard_a) == []
    again = aws.drain(dlq)

    positions = Counter((m["body"]["shardId"], m["body"]["sequenceNumber"]) for m in first + again)
    assert positions == {(r.shard_id, r.sequence_number): 1 for r in shard_a + shard_b}
    assert again == []


def test_s3_dead_letter_is_put_if_absent(aws: AwsStack) -> None:
    (reject,) = decode_records(kinesis_records([b"nope"], [1])).rejects
    store = S3DeadLetterStore(aws.s3, aws.settings.archive_bucket, "dead-letter/")
    later = msgspec.structs.replace(reject, detail="a different run's detail")

    assert store.put([reject]) == []
    assert store.put([later]) == []  # already stored: a success, and the first copy stays

    (body,) = aws.objects(aws.settings.archive_bucket, "dead-letter/").values()
    assert json.loads(body)["detail"] == reject.detail


def test_alert_already_published_is_not_sent_again(aws: AwsStack) -> None:
    batch = decode_records(kinesis_records(list(episode("x", 0, 30, 130)), list(range(7))))
    (alert,) = process_batch(batch, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000).alerts
    settings = aws.settings
    publisher = SnsAlertPublisher(
        aws.dynamodb, settings.alert_history_table, aws.sns, settings.alert_topic_arn
    )

    assert publisher.publish([alert]) == set()
    assert publisher.publish([alert]) == set()

    assert [m["body"]["alertId"] for m in aws.drain(aws.alert_queue_url)] == [alert.alertId]


def test_alert_history_rows_carry_their_expiry(aws: AwsStack) -> None:
    batch = decode_records(kinesis_records(list(episode("ttl", 0, 30, 130)), list(range(7))))
    (alert,) = process_batch(batch, {}, Detector(DEFAULT_CONFIG), T0_MS + 60_000).alerts
    settings = aws.settings
    publisher = SnsAlertPublisher(
        aws.dynamodb,
        settings.alert_history_table,
        aws.sns,
        settings.alert_topic_arn,
        retention_days=30,
        clock=lambda: 1_790_000_000.0,
    )

    assert publisher.publish([alert]) == set()

    row = aws.dynamodb.get_item(
        TableName=settings.alert_history_table, Key={"alertId": {"S": alert.alertId}}, ConsistentRead=True
    )["Item"]
    assert row["expiresAt"] == {"N": str(1_790_000_000 + 30 * 86_400)}
    assert row["state"] == {"S": "PUBLISHED"}


def test_a_window_handoff_is_none_until_put_then_replaced_and_a_missing_bucket_is_a_permanent_error(
    aws: AwsStack,
) -> None:
    store = S3HandoffStore(aws.s3, aws.settings.archive_bucket, "window-handoffs/")
    assert store.get(SHARD_ID) is None
    store.put(SHARD_ID, b"first")
    store.put(SHARD_ID, b"second")
    assert store.get(SHARD_ID) == b"second"
    assert store.get("shardId-000000000001") is None  # a shard's key is not another's prefix match
    assert list(aws.objects(aws.settings.archive_bucket, "window-handoffs/")) == [
        f"window-handoffs/shard={SHARD_ID}/handoff.msgpack.gz"
    ]
    with pytest.raises(SinkError) as missing:
        S3HandoffStore(aws.s3, "no-such-bucket-vitalstream", "window-handoffs/").get(SHARD_ID)
    assert (missing.value.sink, missing.value.code, missing.value.permanent) == (
        Sink.SNAPSHOTS,
        "NoSuchBucket",
        True,
    )


@pytest.mark.kinesis
def test_a_streams_shard_line_names_no_parent_and_its_whole_range(
    aws: AwsStack, kinesis_endpoint: str
) -> None:
    kinesis = aws.session.client("kinesis", endpoint_url=kinesis_endpoint)
    name = f"lineage-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    (shard,) = kinesis.list_shards(StreamName=name)["Shards"]
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    line = KinesisShardLineage(lambda: kinesis).of(arn, shard["ShardId"])
    assert line == ShardLine((), HashRange(0, 2**128 - 1))
    with pytest.raises(SinkError) as missing:
        KinesisShardLineage(lambda: kinesis).of(f"{name}-gone", shard["ShardId"])
    assert missing.value.code == "ResourceNotFoundException"
