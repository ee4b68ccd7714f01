"""Publishers the simulator sends through, chosen with ``--target``: ``kinesis`` (PutRecords), ``mqtt``
(a broker such as Mosquitto or AWS IoT Core) or ``iot-data`` (the AWS IoT Data Plane API).

``add_publisher_arguments`` adds every target's flags to a parser; ``build_publisher`` is the composition
root that turns parsed flags into a ``Publisher``. It raises ``ValueError`` naming the flag when a
required one is missing; AWS values not given fall back to the ``VITALSTREAM_`` settings.
"""

from __future__ import annotations

import argparse
from enum import StrEnum
from pathlib import Path

from service.runtime.ingest_topic import DEFAULT_RULE, rule_name
from service.runtime.publishing import Publisher


class Target(StrEnum):
    KINESIS = "kinesis"
    MQTT = "mqtt"
    IOT_DATA = "iot-data"


def add_publisher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("publishing")
    group.add_argument("--target", choices=[t.value for t in Target], default=Target.KINESIS.value)
    group.add_argument("--rate", type=float, default=0.0, help="max messages per second (0 = unlimited)")
    group.add_argument("--stream-name", help="Kinesis stream (default: VITALSTREAM_STREAM_NAME)")
    group.add_argument("--endpoint-url", help="AWS API endpoint override, e.g. a local emulator")
    group.add_argument("--region", help="AWS region (default: VITALSTREAM_REGION)")
    group.add_argument(
        "--iot-endpoint", help="IoT Data endpoint, https://<prefix>-ats.iot.<region>.amazonaws.com"
    )
    group.add_argument(
        "--ingest-rule",
        type=rule_name,
        default=DEFAULT_RULE,
        help="mqtt and iot-data: devices publish to $aws/rules/RULE/wearables/<id>/telemetry (Basic "
        f"Ingest; the stack's TelemetryRuleName output; default {DEFAULT_RULE})",
    )
    group.add_argument("--mqtt-host", help="MQTT broker host")
    group.add_argument("--mqtt-port", type=int, default=8883)
    group.add_argument("--mqtt-ca", type=Path, help="CA bundle that signed the broker's certificate")
    group.add_argument(
        "--mqtt-cert",
        type=Path,
        help="client certificate shared by all devices; a broker that lets a device publish only as "
        "itself (IoT Core's device policy, infra/mosquitto) accepts it only for its own CN",
    )
    group.add_argument("--mqtt-key", type=Path, help="private key of --mqtt-cert")
    group.add_argument(
        "--mqtt-cert-dir",
        type=Path,
        help="per-device {deviceId}.crt and {deviceId}.key (client id = device id)",
    )
    group.add_argument("--mqtt-connections", type=int, default=4, help="max concurrent broker connections")


def build_publisher(args: argparse.Namespace) -> Publisher:
    """The publisher for ``args.target``. Raises ``ValueError`` naming a missing or conflicting flag."""
    target = Target(args.target)
    if args.rate < 0:
        raise ValueError("--rate must be >= 0")
    if target is Target.MQTT:
        return _mqtt(args)
    import boto3  # noqa: PLC0415 - AWS targets only: MQTT runs and --help stay free of boto3
    from botocore.config import Config  # noqa: PLC0415 - as above

    from service.runtime.config import Settings  # noqa: PLC0415 - as above

    settings = Settings()
    region = args.region or settings.region
    endpoint = args.endpoint_url or settings.endpoint_url
    # One attempt per call: the publishers retry (only the failed entries) and count what they retry.
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
    if target is Target.KINESIS:
        from service.runtime.adapters.kinesis_writer import KinesisPublisher  # noqa: PLC0415

        client = boto3.client("kinesis", region_name=region, endpoint_url=endpoint, config=config)
        return KinesisPublisher(client, args.stream_name or settings.stream_name, rate=args.rate)
    from simulator.publishers.iot_data import IotDataPublisher  # noqa: PLC0415

    iot_endpoint = args.iot_endpoint or endpoint
    if not iot_endpoint:
        raise ValueError("--target iot-data needs --iot-endpoint (or --endpoint-url for an emulator)")
    client_iot = boto3.client("iot-data", region_name=region, endpoint_url=iot_endpoint, config=config)
    return IotDataPublisher(client_iot, rule=args.ingest_rule, rate=args.rate)


def _mqtt(args: argparse.Namespace) -> Publisher:
    from simulator.publishers.mqtt import MqttOptions, MqttPublisher  # noqa: PLC0415 - paho on demand

    if not args.mqtt_host:
        raise ValueError("--target mqtt needs --mqtt-host")
    if (args.mqtt_cert is None) != (args.mqtt_key is None):
        raise ValueError("--mqtt-cert and --mqtt-key go together")
    if args.mqtt_cert_dir is not None and args.mqtt_cert is not None:
        raise ValueError("give either --mqtt-cert-dir (per device) or --mqtt-cert/--mqtt-key (shared)")
    if (args.mqtt_cert or args.mqtt_cert_dir) and args.mqtt_ca is None:
        raise ValueError("client certificates need TLS: add --mqtt-ca")
    if args.mqtt_connections < 1:
        raise ValueError("--mqtt-connections must be >= 1")
    options = MqttOptions(
        host=args.mqtt_host,
        port=args.mqtt_port,
        ca=args.mqtt_ca,
        cert=args.mqtt_cert,
        key=args.mqtt_key,
        cert_dir=args.mqtt_cert_dir,
        connections=args.mqtt_connections,
        rate=args.rate,
        rule=args.ingest_rule,
    )
    return MqttPublisher(options)
