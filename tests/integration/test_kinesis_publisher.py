"""The Kinesis and IoT Data publishers against moto's server on 127.0.0.1: what they count as sent is
exactly what the service holds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from service.runtime.adapters.kinesis_writer import KinesisPublisher
from service.runtime.publishing import Message
from simulator.publishers.iot_data import IotDataPublisher
from tests.integration.conftest import DUMMY_KEY, REGION
from tests.integration.kinesis_helpers import read_stream, seqs_by_device

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]


def fleet_messages(devices: int, per_device: int) -> list[Message]:
    return [
        Message(
            device_id=f"dev-{d:03d}",
            payload=json.dumps({"deviceId": f"dev-{d:03d}", "seq": n, "heartRate": 60 + n % 40}).encode(),
            event_ms=n * 5000,
            send_ms=n * 5000,
        )
        for n in range(per_device)
        for d in range(devices)
    ]


def test_every_message_arrives_once_with_its_device_as_partition_key(kinesis_stream: tuple[Any, str]) -> None:
    client, stream = kinesis_stream
    messages = fleet_messages(devices=50, per_device=40)
    report = KinesisPublisher(client, stream).publish(messages)

    records = read_stream(client, stream)
    assert (report.sent, report.failed) == (2000, 0)
    assert Counter(records) == Counter((m.device_id, m.payload) for m in messages)
    assert all(seqs == list(range(40)) for seqs in seqs_by_device(records).values()), "per-device order"
    shards = client.list_shards(StreamName=stream)["Shards"]
    assert len(shards) == 2


@pytest.fixture
def in_process_moto() -> Iterator[str]:
    """A moto server in this process (the embedded emulator runs in its own): the test reads what
    IoT Data received from moto's backend, which no API returns."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only this test needs it in-process

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_iot_data_publish_sends_each_payload_to_the_device_basic_ingest_topic(in_process_moto: str) -> None:
    from moto.backends import get_backend  # noqa: PLC0415 - moto's in-process backends

    client = boto3.client(
        "iot-data",
        region_name=REGION,
        endpoint_url=in_process_moto,
        aws_access_key_id=DUMMY_KEY,
        aws_secret_access_key=DUMMY_KEY,
    )
    backend = get_backend("iot-data")["123456789012"][REGION]
    before = len(backend.published_payloads)
    messages = fleet_messages(devices=3, per_device=4)
    report = IotDataPublisher(client, rule="acme_telemetry").publish(messages)

    published = backend.published_payloads[before:]
    assert (report.sent, report.failed) == (12, 0)
    topic = "$aws/rules/acme_telemetry/wearables/{}/telemetry"
    assert published == [(topic.format(m.device_id), m.payload) for m in messages]
