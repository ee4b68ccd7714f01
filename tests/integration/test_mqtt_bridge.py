"""Simulator MQTT publisher → Mosquitto (mutual TLS) → ``vitalstream bridge`` → Kinesis (moto), end to end.

Mosquitto is a real broker process on 127.0.0.1 started per test from the shipped configuration
(``infra/mosquitto``: certificate CN = user name, each device may publish only to its own topic), with
certificates from the shipped ``make-certs``; the bridge runs in a thread of the test process. Every wait
is bounded."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from service.runtime.adapters import SqsDeadLetterStore
from service.runtime.bridge import Bridge, BrokerOptions
from service.runtime.ingest_topic import telemetry_topic
from service.runtime.publishing import Message, PublishReport
from simulator.publishers.mqtt import MqttOptions, MqttPublisher
from tests.integration.conftest import AwsStack
from tests.integration.kinesis_helpers import read_stream, seqs_by_device
from tests.integration.mqtt_broker import BRIDGE_IDENTITY, Mosquitto, Pki, make_pki, publish_each
from tests.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]

DEVICES = ["dev-A", "dev-B", "dev-C", "dev-D"]
FLEET = [f"dev-{i:02d}" for i in range(20)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), [*DEVICES, *FLEET])


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Mosquitto]:
    binary = require_tool("mosquitto", "mosquitto", "/usr/sbin/mosquitto")
    mosquitto = Mosquitto(binary, tmp_path / "broker", pki)
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def running_bridge(
    broker: Mosquitto, kinesis: tuple[Any, str], aws: AwsStack, client_id: str = "bridge-1"
) -> Iterator[Bridge]:
    client, stream = kinesis
    pki = broker.pki
    options = BrokerOptions("127.0.0.1", broker.port, pki.ca, pki.bridge_cert, pki.bridge_key, client_id)
    dead_letters = SqsDeadLetterStore(aws.sqs, aws.settings.dead_letter_queue_url)
    bridge = Bridge(options, client, stream, dead_letters, batch_size=500, linger_ms=100)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            bridge.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name="bridge", daemon=True)
    thread.start()
    try:
        wait_until(lambda: bridge.ready or bool(errors), 15, "the bridge to subscribe")
        yield bridge
    finally:
        bridge.stop()
        thread.join(20)
        assert not thread.is_alive(), "bridge did not stop"
    assert not errors, errors


def publisher(pki: Pki, port: int, **overrides: Any) -> MqttPublisher:
    """The simulator's publisher with one certificate per device (``--mqtt-cert-dir``): the only way
    to publish for many devices through a broker that lets each device publish only as itself."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "ca": pki.ca,
        "cert_dir": pki.devices,
        "connections": 4,
        "ack_timeout_s": 20.0,
    }
    settings.update(overrides)
    return MqttPublisher(MqttOptions(**settings))


def telemetry(devices: list[str], seqs: range) -> list[Message]:
    return [
        Message(d, json.dumps({"deviceId": d, "seq": n, "heartRate": 70}).encode(), n, n)
        for n in seqs
        for d in devices
    ]


def test_every_message_reaches_kinesis_exactly_once_keyed_by_device(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    messages = telemetry(FLEET, range(25))
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        sim = publisher(broker.pki, broker.port)
        report = sim.publish(messages)
        sim.close()
        wait_until(lambda: len(read_stream(client, stream)) >= len(messages), 30, "every record in Kinesis")
        wait_until(lambda: bridge.counts.acknowledged == len(messages), 10, "every PUBACK")
    records = read_stream(client, stream)
    assert (report.sent, report.failed) == (500, 0)
    assert Counter(records) == Counter((m.device_id, m.payload) for m in messages)
    assert all(seqs == list(range(25)) for seqs in seqs_by_device(records).values()), "per-device order"
    assert (bridge.counts.forwarded, bridge.counts.dead_lettered) == (500, 0)


def test_per_device_certificates_over_fewer_connections(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    messages = telemetry(DEVICES, range(10))
    with running_bridge(broker, kinesis_stream, aws):
        sim = publisher(broker.pki, broker.port, connections=2)
        report = sim.publish([*messages, *telemetry(["dev-no-cert"], range(2))])
        sim.close()
        wait_until(lambda: len(read_stream(client, stream)) >= len(messages), 30, "every record in Kinesis")
    assert (report.sent, report.failed) == (len(messages), 2)
    assert Counter(read_stream(client, stream)) == Counter((m.device_id, m.payload) for m in messages)


def test_a_client_without_a_certificate_is_refused(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        sim = publisher(broker.pki, broker.port, cert_dir=None, ack_timeout_s=3.0)
        report = sim.publish(telemetry(["dev-A"], range(3)))
        sim.close()
        time.sleep(0.5)
    assert (report.sent, report.failed) == (0, 3)
    assert bridge.counts.forwarded == 0
    assert read_stream(client, stream) == []


def test_a_spoofed_device_id_is_dead_lettered_not_forwarded(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    spoof = b'{"deviceId":"dev-B","seq":1,"heartRate":190}'
    honest = telemetry(["dev-A"], range(1))
    dlq = aws.settings.dead_letter_queue_url
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        sim = publisher(broker.pki, broker.port)
        report = sim.publish([Message("dev-A", spoof, 0, 0), *honest])
        sim.close()
        wait_until(lambda: bridge.counts.acknowledged == 2, 15, "both messages handled")
    dead = aws.drain(dlq)
    assert report.sent == 2
    assert [d["body"]["reason"] for d in dead] == ["device_id_mismatch"]
    assert dead[0]["body"]["deviceId"] == "dev-A"
    assert base64.b64decode(dead[0]["body"]["data"]) == spoof
    assert read_stream(client, stream) == [("dev-A", honest[0].payload)]


def test_a_batch_is_forwarded_by_its_envelope_device_id(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    """The batch contract's message, on the device's own Basic Ingest topic: forwarded unchanged (the
    core validates its samples); a batch whose envelope names another device is dead-lettered."""
    client, stream = kinesis_stream
    batch = (
        b'{"deviceId":"dev-A","samples":[{"timestamp":"2026-11-28T02:31:24.123Z","heartRate":72,"steps":0},'
        b'{"timestamp":"2026-11-28T02:31:29.123Z","heartRate":73,"steps":1}]}'
    )
    spoof = b'{"deviceId":"dev-B","samples":[{"timestamp":"2026-11-28T02:31:24.123Z","heartRate":190}]}'
    pki = broker.pki
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        codes = publish_each(
            broker,
            pki.cert("dev-A"),
            pki.key("dev-A"),
            [(telemetry_topic("dev-A"), m) for m in (batch, spoof)],
        )
        wait_until(lambda: bridge.counts.acknowledged == 2, 15, "both messages handled")
    assert codes == ["Success", "Success"]
    assert read_stream(client, stream) == [("dev-A", batch)]
    dead = aws.drain(aws.settings.dead_letter_queue_url)
    assert [(d["body"]["reason"], base64.b64decode(d["body"]["data"])) for d in dead] == [
        ("device_id_mismatch", spoof)
    ]


@pytest.mark.parametrize(
    ("protocol", "refusal"),
    [
        (MQTTProtocolVersion.MQTTv5, "Not authorized"),
        # MQTT 3.1.1 cannot refuse a PUBLISH: the broker acknowledges it and drops it.
        (MQTTProtocolVersion.MQTTv311, "Success"),
    ],
    ids=["mqtt5", "mqtt3.1.1"],
)
def test_a_device_cannot_publish_as_another_device(
    broker: Mosquitto,
    kinesis_stream: tuple[Any, str],
    aws: AwsStack,
    protocol: MQTTProtocolVersion,
    refusal: str,
) -> None:
    """dev-A's own, valid certificate on dev-B's topic, with a payload that agrees with the topic: the
    bridge alone would forward it as dev-B's heart rate. The broker's ACL drops it."""
    client, stream = kinesis_stream
    as_b = b'{"deviceId":"dev-B","seq":1,"heartRate":190}'
    own = b'{"deviceId":"dev-A","seq":1,"heartRate":70}'
    pki = broker.pki
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        codes = publish_each(
            broker,
            pki.cert("dev-A"),
            pki.key("dev-A"),
            [(telemetry_topic("dev-B"), as_b), (telemetry_topic("dev-A"), own)],
            protocol=protocol,
        )
        # The broker decided on the first message before it acknowledged it, so once the second is
        # through the bridge, the first can no longer arrive.
        wait_until(lambda: bridge.counts.acknowledged >= 1, 15, "dev-A's own message handled")
    assert codes == [refusal, "Success"]
    assert read_stream(client, stream) == [("dev-A", own)]
    assert (bridge.counts.forwarded, bridge.counts.dead_lettered) == (1, 0)


def test_the_bridge_certificate_cannot_publish(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    own = b'{"deviceId":"dev-A","seq":1,"heartRate":70}'
    pki = broker.pki
    with running_bridge(broker, kinesis_stream, aws) as bridge:
        bridge_codes = publish_each(
            broker,
            pki.bridge_cert,
            pki.bridge_key,
            [
                (telemetry_topic("dev-A"), own),
                (telemetry_topic(BRIDGE_IDENTITY), b'{"deviceId":"%s"}' % BRIDGE_IDENTITY.encode()),
            ],
            client_id="not-the-running-bridge",
        )
        device_codes = publish_each(
            broker, pki.cert("dev-A"), pki.key("dev-A"), [(telemetry_topic("dev-A"), own)]
        )
        wait_until(lambda: bridge.counts.acknowledged >= 1, 15, "dev-A's message handled")
    assert bridge_codes == ["Not authorized", "Not authorized"]
    assert device_codes == ["Success"]
    assert read_stream(client, stream) == [("dev-A", own)]
    assert (bridge.counts.forwarded, bridge.counts.dead_lettered) == (1, 0)


def test_nothing_is_lost_across_a_broker_restart_and_a_bridge_restart(
    broker: Mosquitto, kinesis_stream: tuple[Any, str], aws: AwsStack
) -> None:
    client, stream = kinesis_stream
    devices = DEVICES
    before, offline, during = range(0, 50), range(50, 100), range(100, 150)
    sim = publisher(broker.pki, broker.port)
    reports: list[PublishReport] = []
    with running_bridge(broker, kinesis_stream, aws):
        reports.append(sim.publish(telemetry(devices, before)))
        wait_until(lambda: len(read_stream(client, stream)) >= 200, 30, "the first 200 records")
    # The bridge is away: the broker queues for its persistent session, and must keep that queue
    # (persistence) across its own restart.
    reports.append(sim.publish(telemetry(devices, offline)))
    broker.stop()
    during_report: list[PublishReport] = []
    publishing = threading.Thread(
        target=lambda: during_report.append(sim.publish(telemetry(devices, during)))
    )
    publishing.start()  # paho queues while the broker is down and sends after it reconnects
    time.sleep(1.0)
    broker.start()
    publishing.join(60)
    assert not publishing.is_alive(), "publisher did not finish"
    reports += during_report
    with running_bridge(broker, kinesis_stream, aws):
        wait_until(
            lambda: (
                {d: set(s) for d, s in seqs_by_device(read_stream(client, stream)).items()}
                == {d: set(range(150)) for d in devices}
            ),
            60,
            "every seq of every device in Kinesis",
        )
    sim.close()
    assert [(r.sent, r.failed) for r in reports] == [(200, 0), (200, 0), (200, 0)]
