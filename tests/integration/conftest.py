"""Real AWS API endpoints for integration tests: moto's server on 127.0.0.1 (one per session) and,
per test, freshly named resources so tests never see each other's data."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from mypy_boto3_dynamodb.client import DynamoDBClient
from mypy_boto3_s3.client import S3Client
from mypy_boto3_sns.client import SNSClient
from mypy_boto3_sqs.client import SQSClient

from service.config import DeadLetterTarget, Settings

REGION = "us-east-1"
DUMMY_KEY = "testing"  # moto accepts any credentials; these never leave the test process


@pytest.fixture(scope="session")
def aws_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """The AWS API endpoint URL for the chosen ``--aws-backend``."""
    backend = request.config.getoption("--aws-backend")
    if backend != "moto":
        pytest.skip(f"backend {backend} is provided by the stack issue")
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only when the moto backend is chosen

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per API call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


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
def aws(aws_endpoint: str) -> AwsStack:
    """Device-state and alert-history tables, archive + dead-letter bucket, alert topic with a
    subscribed queue, and a dead-letter queue — all named uniquely for this test."""
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
    dlq_url = sqs.create_queue(QueueName=f"dead-letter-{suffix}")["QueueUrl"]
    settings = Settings(
        region=REGION,
        endpoint_url=aws_endpoint,
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
