"""Basic Ingest on the embedded emulator: the provisioned template's IoT rule, reached by the simulator's
``iot-data`` target at ``$aws/rules/<rule>/wearables/<id>/telemetry``, puts each message on the stream
with the device id as partition key — as IoT Core does: the rule named in the topic runs whatever its
FROM clause says, and its ``topic()`` does not see the ``$aws/rules/<rule>/`` prefix.

MiniStack runs IoT rules on Publish (Basic Ingest included); the Kinesis action is the embedded
emulator's mend (``service/tools/emulators/ministack_server.py``). moto's IoT Data only records what it
was sent (``test_kinesis_publisher``) and LocalStack's free tier serves no IoT: both skip."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest

from service.runtime.publishing import Message
from service.tools.provisioning import provision_stack
from simulator.publishers.iot_data import IotDataPublisher
from tests.integration.conftest import DUMMY_KEY, REGION
from tests.integration.kinesis_helpers import read_stream

pytestmark = [pytest.mark.integration]
RULES_RUN_ON_PUBLISH = {"ministack"}


@pytest.fixture(autouse=True)
def emulator_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def client(name: str, endpoint: str) -> Any:
    return boto3.client(name, region_name=REGION, endpoint_url=endpoint)  # type: ignore[call-overload]


def test_iot_data_basic_ingest_reaches_the_stream_through_the_templates_rule(
    aws_endpoint: str, backend: str
) -> None:
    if backend not in RULES_RUN_ON_PUBLISH:
        pytest.skip(f"{backend} does not run IoT rules on Publish")
    prefix = f"bi-{uuid.uuid4().hex[:8]}"
    outputs = provision_stack(prefix, endpoint_url=aws_endpoint, parameters={"NamePrefix": prefix}).outputs
    rule = outputs["TelemetryRuleName"]
    assert rule == f"{prefix.replace('-', '_')}_telemetry"
    single = {"deviceId": "dev-1", "timestamp": "2026-11-28T02:31:24.123Z", "heartRate": 72, "steps": 0}
    batch = {"deviceId": "dev-2", "samples": [{"timestamp": "2026-11-28T02:31:24.123Z", "heartRate": 70}]}
    messages = [Message(str(m["deviceId"]), json.dumps(m).encode(), 0, 0) for m in (single, batch)]

    report = IotDataPublisher(client("iot-data", aws_endpoint), rule=rule).publish(messages)
    # another rule's Basic Ingest topic does not run this rule (and no device may publish there)
    other = IotDataPublisher(client("iot-data", aws_endpoint), rule=f"{rule}_other")
    other.publish([Message("dev-3", b'{"deviceId":"dev-3"}', 0, 0)])

    kinesis = client("kinesis", aws_endpoint)
    deadline = time.monotonic() + 20
    while len(records := read_stream(kinesis, outputs["StreamName"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (report.sent, report.failed) == (2, 0)
    assert sorted((key, json.loads(data)) for key, data in records) == [
        ("dev-1", {**single, "topicDeviceId": "dev-1"}),
        ("dev-2", {**batch, "topicDeviceId": "dev-2"}),
    ]
