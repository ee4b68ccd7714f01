"""``vitalstream bridge``: its flags and the composition of one bridge (``service.runtime.bridge``)
from the settings: the Kinesis client and the dead-letter store the Lambda shim would use."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.runtime.bridge import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLIENT_ID,
    DEFAULT_LINGER_MS,
    Bridge,
    BrokerOptions,
)
from service.runtime.ingest_topic import DEFAULT_RULE, rule_name

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient

    from service.runtime.config import Settings
    from service.runtime.ports import DeadLetterStore


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--mqtt-ca", type=Path, help="CA bundle that signed the broker's certificate")
    parser.add_argument(
        "--mqtt-cert",
        type=Path,
        help="the bridge's client certificate (CN vitalstream-bridge for infra/mosquitto)",
    )
    parser.add_argument("--mqtt-key", type=Path, help="private key of --mqtt-cert")
    parser.add_argument(
        "--ingest-rule",
        type=rule_name,
        default=DEFAULT_RULE,
        help="the rule named in the devices' topic $aws/rules/RULE/wearables/+/telemetry "
        f"(default {DEFAULT_RULE}, as infra/mosquitto/vitalstream.acl)",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="persistent-session client id")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="max records per PutRecords"
    )
    parser.add_argument("--linger-ms", type=int, default=DEFAULT_LINGER_MS, help="max wait to fill a batch")
    parser.add_argument("--stream-name", help="Kinesis stream (default: VITALSTREAM_STREAM_NAME)")
    parser.add_argument(
        "--endpoint-url", help="AWS API endpoint override (default: VITALSTREAM_ENDPOINT_URL)"
    )
    parser.add_argument("--region", help="AWS region (default: VITALSTREAM_REGION)")


def run(args: argparse.Namespace) -> int:
    from service.runtime.adapters.kinesis_writer import PublishError  # noqa: PLC0415 - as above
    from service.runtime.config import Settings  # noqa: PLC0415 - keep `vitalstream --help` fast

    if not 1 <= args.batch_size <= 500:
        print("vitalstream bridge: --batch-size must be 1-500", file=sys.stderr)
        return 2
    if (args.mqtt_cert is None) != (args.mqtt_key is None):
        print("vitalstream bridge: --mqtt-cert and --mqtt-key go together", file=sys.stderr)
        return 2
    overrides = {"stream_name": args.stream_name, "endpoint_url": args.endpoint_url, "region": args.region}
    settings = Settings().model_copy(update={k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kinesis, dead_letters = build_sinks(settings)
    broker = BrokerOptions(
        args.mqtt_host, args.mqtt_port, args.mqtt_ca, args.mqtt_cert, args.mqtt_key, args.client_id
    )
    bridge = Bridge(
        broker,
        kinesis,
        settings.stream_name,
        dead_letters,
        batch_size=args.batch_size,
        linger_ms=args.linger_ms,
        rule=args.ingest_rule,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: bridge.stop())
    try:
        bridge.run()
    except PublishError as exc:
        print(f"vitalstream bridge: {exc}", file=sys.stderr)
        return 1
    counts = bridge.counts
    print(
        f"forwarded {counts.forwarded:,}, dead-lettered {counts.dead_lettered:,}, "
        f"acknowledged {counts.acknowledged:,}, reconnects {counts.reconnects:,}"
    )
    return 0


def build_sinks(settings: Settings) -> tuple[KinesisClient, DeadLetterStore]:
    """The Kinesis client and the dead-letter store the settings name (the Lambda shim's choice)."""
    import boto3  # noqa: PLC0415 - boto3 on demand
    from botocore.config import Config  # noqa: PLC0415 - as above

    from service.runtime.composition import build_dead_letter_store, client  # noqa: PLC0415 - as above

    session = boto3.Session()
    single = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
    kinesis: KinesisClient = client(session, "kinesis", settings, single)
    return kinesis, build_dead_letter_store(settings, session)
