"""``build_publisher`` refuses incomplete flags with a message naming the flag to add."""

from __future__ import annotations

import argparse

import pytest

from service.runtime.adapters.kinesis_writer import KinesisPublisher
from simulator.publishers import add_publisher_arguments, build_publisher


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_publisher_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--target", "mqtt"], "--mqtt-host"),
        (["--target", "mqtt", "--mqtt-host", "h", "--mqtt-cert", "c.crt"], "--mqtt-key"),
        (["--target", "mqtt", "--mqtt-host", "h", "--mqtt-cert", "c", "--mqtt-key", "k"], "--mqtt-ca"),
        (["--target", "mqtt", "--mqtt-host", "h", "--mqtt-connections", "0"], "--mqtt-connections"),
        (["--target", "iot-data"], "--iot-endpoint"),
        (["--rate", "-1"], "--rate"),
    ],
)
def test_missing_or_conflicting_flags_are_named(
    argv: list[str], flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VITALSTREAM_ENDPOINT_URL", raising=False)
    with pytest.raises(ValueError, match=flag):
        build_publisher(_args(*argv))


def test_kinesis_is_the_default_target() -> None:
    args = _args("--stream-name", "s", "--region", "eu-west-1", "--endpoint-url", "http://127.0.0.1:1")
    assert isinstance(build_publisher(args), KinesisPublisher)


def test_the_ingest_rule_names_the_basic_ingest_topic_and_must_be_a_rule_name() -> None:
    assert _args().ingest_rule == "vitalstream_telemetry"
    assert _args("--ingest-rule", "acme_prod_telemetry").ingest_rule == "acme_prod_telemetry"
    with pytest.raises(SystemExit):
        _args("--ingest-rule", "acme-prod")  # a NamePrefix, not the rule name it makes
