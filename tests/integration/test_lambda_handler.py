"""The Lambda handler end to end against real AWS APIs (moto server by default)."""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from lambda_shim import handler as shim
from lambda_shim.bootstrap import build_pipeline
from service.core import padded_sequence
from service.runtime.config import Settings
from tests.emf import check_emf, emf_lines
from tests.events import (
    SHARD_ID,
    episode,
    interleave,
    kinesis_event,
    sample,
    sequence,
    sequences,
    tail,
)
from tests.integration.conftest import AwsStack

pytestmark = pytest.mark.integration

Invoke = Callable[[dict[str, Any]], list[str]]


def _environment(settings: Settings) -> dict[str, str]:
    values = settings.model_dump(exclude={"detection"})
    env = {f"VITALSTREAM_{name.upper()}": str(value) for name, value in values.items() if value is not None}
    return env | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": ""}


@pytest.fixture
def invoke(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """Call the handler as Lambda would: configured only through the environment, one runtime per
    container. Returns the ``batchItemFailures`` identifiers."""
    for name, value in _environment(aws.settings).items():
        monkeypatch.setenv(name, value)
    runtime = shim._runtime
    runtime.cache_clear()

    def call(event: dict[str, Any]) -> list[str]:
        response = shim.handler(event, None)
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    yield call
    runtime.cache_clear()


def archived_lines(aws: AwsStack) -> list[dict[str, Any]]:
    objects = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix)
    return [json.loads(line) for body in objects.values() for line in gzip.decompress(body).splitlines()]


def state_item(aws: AwsStack, device_id: str) -> dict[str, Any] | None:
    response = aws.dynamodb.get_item(
        TableName=aws.settings.device_state_table, Key={"deviceId": {"S": device_id}}, ConsistentRead=True
    )
    return response.get("Item")


def happy_batch() -> dict[str, Any]:
    calm = [sample("watch-calm", t, 72, steps=3, battery=80, spo2=98) for t in range(0, 40, 5)]
    calm[2]["firmware"] = "2.4.1"  # unknown fields pass through to the archive
    racing = episode("watch-racing", 0, 35, 130)  # at rest ≥ 120 bpm from t=0: raised at t=30 s
    return kinesis_event(interleave(calm, racing))


def test_happy_batch_reaches_every_sink(
    aws: AwsStack, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    event = happy_batch()
    seqs = sequences(event)
    capsys.readouterr()

    assert invoke(event) == []

    (metrics,) = emf_lines(capsys.readouterr().out)  # one EMF line per invocation, valid
    check_emf(metrics)
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "mode"]]
    assert (metrics["service"], metrics["mode"], metrics["shard_id"]) == ("vitalstream", "batch", SHARD_ID)
    assert (metrics["KinesisRecords"], metrics["Samples_processed"], metrics["Samples_rejected"]) == (
        16,
        16,
        0,
    )
    assert (metrics["Alerts_TACHYCARDIA"], len(metrics["DetectionLatency"])) == (1, 1)
    assert len(metrics["SinkLatency"]) == 16
    assert (metrics["AwsRequests_sns_Publish"], metrics["AwsRequests_s3_PutObject"]) == (1, 1)
    assert metrics[f"ItemWrites_{aws.settings.device_state_table}"] == 2  # one per device

    objects = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix)
    assert len(objects) == 1
    (key,) = objects
    assert key.startswith("telemetry/dt=2026-03-01/shard=shardId-000000000000/")
    assert key.endswith(f"/{padded_sequence(seqs[0])}-{padded_sequence(seqs[-1])}.jsonl.gz")
    lines = archived_lines(aws)
    assert [line["sequenceNumber"] for line in lines] == seqs
    for line in lines:
        assert line["shardId"] == "shardId-000000000000"
        assert line["processedAt"].endswith("Z")
        assert line["latencyMs"] > 0
        assert line["status"] in {"NORMAL", "TACHYCARDIA"}
    assert sum(1 for line in lines if line.get("firmware") == "2.4.1") == 1
    racing_statuses = [line["status"] for line in lines if line["deviceId"] == "watch-racing"]
    assert racing_statuses[-2:] == ["TACHYCARDIA", "TACHYCARDIA"]

    calm_seqs = [line["sequenceNumber"] for line in lines if line["deviceId"] == "watch-calm"]
    item = state_item(aws, "watch-calm")
    assert item is not None
    assert item["lastSeq"]["S"] == calm_seqs[-1].zfill(40)
    assert item["shardId"]["S"] == "shardId-000000000000"
    assert item["heartRate"]["N"] == "72"
    assert item["battery"]["N"] == "80"
    assert item["timestamp"]["S"] == "2026-03-01T10:00:35.000Z"
    assert item["status"]["S"] == "NORMAL"
    racing = state_item(aws, "watch-racing")
    assert racing is not None
    assert racing["anomalies"]["L"] == [{"S": "TACHYCARDIA"}]

    alerts = aws.drain(aws.alert_queue_url)
    assert len(alerts) == 1
    alert = alerts[0]["body"]
    assert (alert["deviceId"], alert["type"], alert["startedAt"]) == (
        "watch-racing",
        "TACHYCARDIA",
        "2026-03-01T10:00:00.000Z",
    )
    assert alerts[0]["attributes"] == {"type": "TACHYCARDIA", "severity": "HIGH", "deviceId": "watch-racing"}
    history = aws.scan(aws.settings.alert_history_table)
    assert [(row["alertId"]["S"], row["state"]["S"]) for row in history] == [(alert["alertId"], "PUBLISHED")]
    assert aws.drain(aws.settings.dead_letter_queue_url) == []


def test_redelivered_batch_changes_nothing(aws: AwsStack, invoke: Invoke) -> None:
    event = happy_batch()
    assert invoke(event) == []
    archive = aws.objects(aws.settings.archive_bucket)
    states = aws.scan(aws.settings.device_state_table)
    history = aws.scan(aws.settings.alert_history_table)
    assert len(aws.drain(aws.alert_queue_url)) == 1

    assert invoke(event) == []

    assert aws.objects(aws.settings.archive_bucket) == archive
    assert aws.scan(aws.settings.device_state_table) == states
    assert aws.scan(aws.settings.alert_history_table) == history
    assert aws.drain(aws.alert_queue_url) == []
    assert aws.drain(aws.settings.dead_letter_queue_url) == []


def test_poison_records_go_to_the_dead_letter_queue(aws: AwsStack, invoke: Invoke) -> None:
    garbage = b"\xff\xfe\x00garbage"
    not_json = b'{"deviceId": "watch-1", "heartRate": '
    out_of_range = {**sample("watch-1", 10, 72), "heartRate": 400}
    event = kinesis_event(
        [sample("watch-1", 0, 70), garbage, not_json, out_of_range, sample("watch-1", 20, 71)]
    )
    seqs = sequences(event)

    assert invoke(event) == []

    dead = {m["body"]["sequenceNumber"]: m for m in aws.drain(aws.settings.dead_letter_queue_url)}
    assert set(dead) == set(seqs[1:4])
    raw_by_seq = {seqs[1]: garbage, seqs[2]: not_json, seqs[3]: json.dumps(out_of_range).encode()}
    for seq, message in dead.items():
        body = message["body"]
        assert base64.b64decode(body["data"]) == raw_by_seq[seq]
        assert body["shardId"] == "shardId-000000000000"
        assert message["attributes"]["reason"] == body["reason"]
    assert dead[seqs[2]]["body"]["reason"] == "invalid_json"
    assert (dead[seqs[3]]["body"]["reason"], dead[seqs[3]]["body"]["field"]) == ("out_of_range", "heartRate")
    assert [line["sequenceNumber"] for line in archived_lines(aws)] == [seqs[0], seqs[4]]
    item = state_item(aws, "watch-1")
    assert item is not None
    assert item["lastSeq"]["S"] == seqs[4].zfill(40)


def test_failed_alert_holds_back_only_its_device(
    aws: AwsStack, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty: set[str] = {"watch-racing"}

    def refuse_publish(params: dict[str, Any], **_: Any) -> None:
        if params["MessageAttributes"]["deviceId"]["StringValue"] in faulty:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "Publish")

    aws.session.events.register("before-parameter-build.sns.Publish", refuse_publish)
    monkeypatch.setattr(shim, "_runtime", lambda: build_pipeline(aws.settings, aws.session))
    calm = [sample("watch-calm", t, 70, steps=2) for t in range(0, 40, 5)]
    racing = episode("watch-racing", 0, 35, 130)
    event = kinesis_event(interleave(racing, calm))
    by_device = {
        d: [r["kinesis"]["sequenceNumber"] for r in event["Records"] if r["kinesis"]["partitionKey"] == d]
        for d in ("watch-calm", "watch-racing")
    }
    racing_first = by_device["watch-racing"][0]

    failures = invoke(event)

    assert failures == [racing_first]
    assert state_item(aws, "watch-racing") is None
    calm_item = state_item(aws, "watch-calm")
    assert calm_item is not None
    assert calm_item["lastSeq"]["S"] == by_device["watch-calm"][-1].zfill(40)
    assert {line["deviceId"] for line in archived_lines(aws)} == {"watch-calm"}
    assert aws.drain(aws.alert_queue_url) == []

    faulty.clear()
    assert invoke(tail(event, min(failures, key=int))) == []

    pairs = Counter((line["deviceId"], line["sequenceNumber"]) for line in archived_lines(aws))
    assert max(pairs.values()) == 1
    assert len(pairs) == len(event["Records"])
    racing_item = state_item(aws, "watch-racing")
    assert racing_item is not None
    alerts = aws.drain(aws.alert_queue_url)
    assert [(a["body"]["deviceId"], a["body"]["type"]) for a in alerts] == [("watch-racing", "TACHYCARDIA")]
    assert [row["state"]["S"] for row in aws.scan(aws.settings.alert_history_table)] == ["PUBLISHED"]


def test_detector_state_survives_between_invocations(aws: AwsStack, invoke: Invoke) -> None:
    samples = episode("watch-racing", 0, 55, 130)  # 12 samples; sustain reached at t=30 s (index 6)
    batches = [samples[:4], samples[4:8], samples[8:]]
    published = []
    offset = 0
    for batch in batches:
        assert invoke(kinesis_event(batch, first_sequence=int(sequence(offset)))) == []
        published.append(aws.drain(aws.alert_queue_url))
        offset += len(batch)

    assert [len(alerts) for alerts in published] == [0, 1, 0]
    alert = published[1][0]["body"]
    assert (alert["startedAt"], alert["detectedAt"]) == (
        "2026-03-01T10:00:00.000Z",
        "2026-03-01T10:00:30.000Z",
    )
    assert len(aws.scan(aws.settings.alert_history_table)) == 1
    item = state_item(aws, "watch-racing")
    assert item is not None
    assert item["lastSeq"]["S"] == sequence(len(samples) - 1).zfill(40)


def test_kpl_aggregated_record_is_deaggregated(aws: AwsStack, invoke: Invoke) -> None:
    users = [sample("watch-a", 0, 70), sample("watch-b", 0, 80), sample("watch-a", 5, 71)]
    aggregator = RecordAggregator()
    for user in users:
        assert aggregator.add_user_record(user["deviceId"], json.dumps(user).encode()) is None
    partition_key, _, data = aggregator.clear_and_get().get_contents()
    event = kinesis_event([data, sample("watch-b", 5, 81)], partition_keys=[partition_key, "watch-b"])
    aggregated_seq, plain_seq = sequences(event)

    assert invoke(event) == []

    lines = archived_lines(aws)
    assert [(line["deviceId"], line["sequenceNumber"], line.get("subSequenceNumber")) for line in lines] == [
        ("watch-a", aggregated_seq, 0),
        ("watch-b", aggregated_seq, 1),
        ("watch-a", aggregated_seq, 2),
        ("watch-b", plain_seq, None),
    ]
    (key,) = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix)
    span = f"{padded_sequence(aggregated_seq)}-{padded_sequence(plain_seq)}"
    assert key.endswith(f"/{span}.jsonl.gz")  # the batch span: Kinesis records
    item = state_item(aws, "watch-a")
    assert item is not None
    assert (item["lastSeq"]["S"], item["lastSubSeq"]["N"], item["heartRate"]["N"]) == (
        aggregated_seq.zfill(40),
        "2",
        "71",
    )


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of Lambda's context object that the handler reads."""

    aws_request_id: str
    function_name: str = "vitalstream-processor"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vitalstream-processor"


def test_a_denied_publish_is_logged_once_per_invocation_with_its_code_and_nothing_is_lost(
    aws: AwsStack, invoke: Invoke, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    denied = [True]

    def deny_publish(request: Any, **_: Any) -> AWSResponse | None:
        if not denied[0]:  # registered for SNS Publish only
            return None
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code>"
            b"<Message>not authorized to perform SNS:Publish</Message></Error></ErrorResponse>"
        )
        return AWSResponse(request.url, 403, {}, _Raw(body))

    aws.session.events.register("before-send.sns.Publish", deny_publish)
    monkeypatch.setattr(shim, "_runtime", lambda: build_pipeline(aws.settings, aws.session))
    racing = episode("watch-racing", 0, 35, 130)  # two devices' alerts in one batch: one cause
    other = episode("watch-other", 0, 35, 131)
    event = kinesis_event(interleave(racing, other))
    shard = event["Records"][0]["eventID"].partition(":")[0]
    capsys.readouterr()

    for attempt in ("req-1", "req-2"):  # Lambda retries the batch: each invocation says why, once
        response = shim.handler(event, LambdaContext(attempt))
        assert response["batchItemFailures"]
        out = capsys.readouterr().out
        (metrics,) = emf_lines(out)
        check_emf(metrics)
        assert (metrics["SinkErrors_alerts"], metrics["Alerts"], metrics["Samples_retried"]) == (1, 0, 16)
        assert metrics["function_request_id"] == attempt
        lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]
        summary = lines.pop(0)
        assert (summary["message"], summary["shard_id"], summary["batch_size"]) == (
            "batch processed",
            shard,
            16,
        )
        assert lines == [
            {
                "level": "ERROR",
                "message": "sink error",
                "timestamp": lines[0]["timestamp"],
                "service": "vitalstream",
                "sink": "alerts",
                "code": "AuthorizationError",
                "resource": aws.settings.alert_topic_arn,
                "permanent": True,
                "error": "AuthorizationErrorException",  # the modeled ClientError
                "cold_start": lines[0]["cold_start"],
                "function_name": "vitalstream-processor",
                "function_arn": LambdaContext(attempt).invoked_function_arn,
                "function_request_id": attempt,
                "shard_id": shard,
                "first_sequence": event["Records"][0]["kinesis"]["sequenceNumber"],
                "last_sequence": event["Records"][-1]["kinesis"]["sequenceNumber"],
                "batch_size": 16,
            }
        ]
    assert aws.drain(aws.alert_queue_url) == []

    denied[0] = False  # the permission is restored: the retried batch lands whole
    assert shim.handler(event, LambdaContext("req-3"))["batchItemFailures"] == []
    out = capsys.readouterr().out
    assert '"sink error"' not in out
    (metrics,) = emf_lines(out)
    assert (metrics["SinkErrors"], metrics["Alerts"], metrics["Samples_processed"]) == (0, 2, 16)
    alerts = aws.drain(aws.alert_queue_url)
    assert sorted(a["body"]["deviceId"] for a in alerts) == ["watch-other", "watch-racing"]
    pairs = Counter((line["deviceId"], line["sequenceNumber"]) for line in archived_lines(aws))
    assert len(pairs) == len(event["Records"])
    assert max(pairs.values()) == 1


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body
