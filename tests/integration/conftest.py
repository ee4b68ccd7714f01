"""Real AWS API endpoints for integration tests: the embedded emulator on 127.0.0.1 (one per session;
MiniStack by default, moto's server with ``--aws-backend=moto``) and, per test, freshly named
resources so tests never see each other's data."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from mypy_boto3_dynamodb.client import DynamoDBClient
from mypy_boto3_s3.client import S3Client
from mypy_boto3_sns.client import SNSClient
from mypy_boto3_sqs.client import SQSClient

from service.runtime.config import DeadLetterTarget, Settings
from service.tools.emulator import EmbeddedAws, Engine
from tests.integration.kinesis_mock import kinesis_mock
from tests.integration.kinesis_mock import unavailable_reason as kinesis_mock_unavailable
from tests.integration.localstack import localstack_endpoint
from tests.integration.ministack import ministack
from tests.integration.ministack import unavailable_reason as ministack_unavailable
from tests.tools import missing

REGION = "us-east-1"
DUMMY_KEY = "testing"  # moto accepts any credentials; these never leave the test process
# the template's DeadLetterQueue: FIFO, deduplicated per message group (shard), high throughput
DEAD_LETTER_QUEUE = {
    "FifoQueue": "true",
    "DeduplicationScope": "messageGroup",
    "FifoThroughputLimit": "perMessageGroupId",
}


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--aws-backend"))


@pytest.fixture(scope="session")
def aws_endpoint(backend: str) -> Iterator[str]:
    """The AWS API endpoint for every service but (with ``kinesis-mock``) Kinesis: the embedded
    emulator (MiniStack, or moto's server with its Kinesis write race closed) or LocalStack."""
    if backend in ("ministack", "moto", "kinesis-mock"):
        reason = ministack_unavailable() if backend != "moto" else None
        if reason is not None:
            missing(reason)
        with EmbeddedAws(engine=Engine.MOTO if backend == "moto" else Engine.MINISTACK) as endpoint:
            yield endpoint
    elif backend == "localstack":
        with localstack_endpoint() as endpoint:
            yield endpoint
    else:
        pytest.skip(
            "--aws-backend=aws: these tests create and delete uniquely named resources in the account "
            "of your default credentials; not wired to run from this machine (no route to AWS)"
        )


@pytest.fixture(scope="session")
def kinesis_endpoint(
    backend: str, aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The Kinesis endpoint: kinesis-mock for ``--aws-backend=kinesis-mock``, else ``aws_endpoint``."""
    if backend != "kinesis-mock":
        yield aws_endpoint
        return
    reason = kinesis_mock_unavailable()
    if reason is not None:
        missing(reason)
    with kinesis_mock(tmp_path_factory.mktemp("kinesis-mock") / "kinesis-mock.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def fan_out_endpoint(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Kinesis endpoint that serves SubscribeToShard: LocalStack (the session's own container) for
    ``--aws-backend=localstack``, else MiniStack on 127.0.0.1 (moto and kinesis-mock have no
    enhanced fan-out)."""
    if backend == "localstack":
        yield str(request.getfixturevalue("aws_endpoint"))
        return
    if backend == "aws":
        pytest.skip("--aws-backend=aws: not wired to run from this machine (no route to AWS)")
    reason = ministack_unavailable()
    if reason is not None:
        missing(reason)
    with ministack(tmp_path_factory.mktemp("ministack")) as endpoint:
        yield endpoint


UNFAITHFUL_RESHARDING = {
    "moto": "moto's SplitShard moves the parent's records into its children and MergeShards copies them",
    "ministack": (
        "MiniStack's SplitShard and MergeShards delete the parent shard with its unread records, and its "
        "closed shards never end"
    ),
}


def skip_unfaithful_resharding(
    backend: str, unfaithful: Collection[str] = tuple(UNFAITHFUL_RESHARDING)
) -> None:
    """Resharding tests need Kinesis's semantics: a closed parent stays readable to its end. A test
    that holds on some of the unfaithful backends names those it cannot hold on (``unfaithful``)."""
    if backend in unfaithful:
        pytest.skip(
            f"{UNFAITHFUL_RESHARDING[backend]} (not Kinesis's semantics): resharding is tested on "
            "kinesis-mock, where scripts/dev.py test runs the -m kinesis suite again"
        )


@dataclass(frozen=True)
class AwsStack:
    """Fresh resources for one test, the ``Settings`` that point at them, and clients to inspect them."""

    settings: Settings
    session: boto3.Session
    dynamodb: DynamoDBClient
    s3: S3Client
    sns: SNSClient
    sqs: SQSClient
    alert_queue_url: str  # subscribed to the alert topic with raw message delivery

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        """Receive and delete every visible message: ``{"body": ..., "attributes": {name: value}}``."""
        messages: list[dict[str, Any]] = []
        while True:
            received = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not received:
                return messages
            for message in received:
                attributes = {
                    name: value.get("StringValue")
                    for name, value in message.get("MessageAttributes", {}).items()
                }
                messages.append({"body": json.loads(message["Body"]), "attributes": attributes})
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    def scan(self, table: str) -> list[dict[str, Any]]:
        return list(self.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"])

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


@pytest.fixture
def aws(aws_endpoint: str, kinesis_endpoint: str) -> AwsStack:
    """Device-state and alert-history tables, archive + dead-letter bucket, alert topic with a
    subscribed queue, and a FIFO dead-letter queue — all named uniquely for this test."""
    suffix = uuid.uuid4().hex[:10]
    session = boto3.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)
    dynamodb = session.client("dynamodb", endpoint_url=aws_endpoint)
    s3 = session.client("s3", endpoint_url=aws_endpoint)
    sns = session.client("sns", endpoint_url=aws_endpoint)
    sqs = session.client("sqs", endpoint_url=aws_endpoint)

    state_table, history_table = f"device-state-{suffix}", f"alert-history-{suffix}"
    for table, key in ((state_table, "deviceId"), (history_table, "alertId")):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    bucket = f"vitalstream-{suffix}"
    s3.create_bucket(Bucket=bucket)
    topic_arn = sns.create_topic(Name=f"alerts-{suffix}")["TopicArn"]
    alert_queue_url = sqs.create_queue(QueueName=f"alerts-{suffix}")["QueueUrl"]
    alert_queue_arn = sqs.get_queue_attributes(QueueUrl=alert_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=alert_queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    dlq = sqs.create_queue(QueueName=f"dead-letter-{suffix}.fifo", Attributes=DEAD_LETTER_QUEUE)
    dlq_url = dlq["QueueUrl"]
    settings = Settings(
        region=REGION,
        endpoint_url=aws_endpoint,
        kinesis_endpoint_url=kinesis_endpoint,
        archive_bucket=bucket,
        archive_prefix="telemetry/",
        device_state_table=state_table,
        alert_history_table=history_table,
        alert_topic_arn=topic_arn,
        dead_letter_target=DeadLetterTarget.SQS,
        dead_letter_queue_url=dlq_url,
        dead_letter_bucket=bucket,
        dead_letter_prefix="dead-letter/",
    )
    return AwsStack(settings, session, dynamodb, s3, sns, sqs, alert_queue_url)


@pytest.fixture
def kinesis_stream(kinesis_endpoint: str) -> Iterator[tuple[Any, str]]:
    """A fresh 2-shard Kinesis stream: ``(client, stream_name)``, deleted afterwards."""
    client = boto3.client(
        "kinesis",
        region_name=REGION,
        endpoint_url=kinesis_endpoint,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
    )
    name = f"telemetry-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=2)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    try:
        yield client, name
    finally:
        client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
