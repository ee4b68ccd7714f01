"""The bridge's decisions without a broker: topic parsing (the Basic Ingest topic devices publish to), the
device-id check for single samples and batches, batch flushing."""

from __future__ import annotations

import json

import pytest

from service.core import Reject, RejectReason
from service.runtime.bridge_routing import flush_due, route
from service.runtime.ingest_topic import (
    DEFAULT_RULE,
    rule_name,
    telemetry_topic,
    topic_device_id,
    topic_filter,
)
from service.runtime.publishing import Message

RULE = "$aws/rules/vitalstream_telemetry"


def topic(device_id: str) -> str:
    return f"{RULE}/wearables/{device_id}/telemetry"


@pytest.mark.parametrize(
    ("topic", "device_id"),
    [
        (f"{RULE}/wearables/dev-1/telemetry", "dev-1"),
        (f"{RULE}/wearables/a.b:c_d-9/telemetry", "a.b:c_d-9"),
        (f"{RULE}/wearables//telemetry", None),
        (f"{RULE}/wearables/telemetry", None),
        (f"{RULE}/wearables/dev-1/status", None),
        (f"{RULE}/wearables/dev-1/telemetry/extra", None),
        (f"{RULE}/wearables/a/b/telemetry", None),
        ("$aws/rules/other_rule/wearables/dev-1/telemetry", None),
        ("$aws/rules/vitalstream_telemetry_2/wearables/dev-1/telemetry", None),
        ("wearables/dev-1/telemetry", None),  # the message broker's topic: not what devices publish to
        ("other/dev-1/telemetry", None),
        ("dev-1", None),
    ],
)
def test_topic_device_id(topic: str, device_id: str | None) -> None:
    assert topic_device_id(topic) == device_id


def test_the_topic_names_its_rule_and_round_trips() -> None:
    assert DEFAULT_RULE == "vitalstream_telemetry"
    assert telemetry_topic("dev-1", "acme_telemetry") == "$aws/rules/acme_telemetry/wearables/dev-1/telemetry"
    assert topic_device_id(telemetry_topic("dev-1", "acme_telemetry"), "acme_telemetry") == "dev-1"
    assert topic_device_id(telemetry_topic("dev-1", "acme_telemetry")) is None
    assert topic_filter() == "$aws/rules/vitalstream_telemetry/wearables/+/telemetry"


@pytest.mark.parametrize("name", ["a-b", "a/b", "", "x" * 129, "+", "a b"])
def test_what_is_not_a_rule_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not an IoT rule name"):
        rule_name(name)


def _route(topic: str, payload: bytes) -> Message | Reject:
    return route(topic, payload, arrival_ms=1_700_000_000_000, sequence_number="42")


def test_a_payload_matching_its_topic_is_forwarded_unchanged_keyed_by_the_topic() -> None:
    payload = json.dumps({"deviceId": "dev-1", "heartRate": 70, "extra": [1]}).encode()
    routed = _route(topic("dev-1"), payload)
    assert routed == Message(
        device_id="dev-1", payload=payload, event_ms=1_700_000_000_000, send_ms=1_700_000_000_000
    )


def test_a_batch_is_forwarded_by_its_envelope_device_id() -> None:
    """The batch contract: ``{"deviceId": ..., "samples": [...]}``; samples carry no deviceId of their
    own (or the envelope's), and are the core's to validate one by one."""
    payload = (
        b'{"deviceId":"dev-1","samples":[{"timestamp":"2026-11-28T02:31:24.123Z","heartRate":72,"steps":0},'
        b'{"timestamp":"2026-11-28T02:31:29.123Z","heartRate":73,"steps":2,"deviceId":"dev-1"}]}'
    )
    assert _route(topic("dev-1"), payload) == Message("dev-1", payload, 1_700_000_000_000, 1_700_000_000_000)


def test_a_batch_whose_envelope_names_another_device_is_dead_lettered() -> None:
    payload = b'{"deviceId":"dev-2","samples":[{"timestamp":"2026-11-28T02:31:24.123Z","heartRate":72}]}'
    routed = _route(topic("dev-1"), payload)
    assert isinstance(routed, Reject)
    assert (routed.reason, routed.device_id) == (RejectReason.DEVICE_ID_MISMATCH, "dev-1")


def test_another_rules_topic_is_dead_lettered_unless_the_bridge_serves_that_rule() -> None:
    payload = b'{"deviceId":"dev-1","heartRate":70}'
    other = telemetry_topic("dev-1", "acme_telemetry")
    assert isinstance(_route(other, payload), Reject)
    served = route(other, payload, arrival_ms=1, sequence_number="1", rule="acme_telemetry")
    assert served == Message("dev-1", payload, 1, 1)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "field"),
    [
        (
            topic("dev-A"),
            b'{"deviceId":"dev-B","heartRate":70}',
            RejectReason.DEVICE_ID_MISMATCH,
            "deviceId",
        ),
        (topic("dev-A"), b'{"deviceId":"dev-a"}', RejectReason.DEVICE_ID_MISMATCH, "deviceId"),
        (topic("dev-A"), b'{"heartRate":70}', RejectReason.MISSING_FIELD, "deviceId"),
        (topic("dev-A"), b'{"deviceId":null}', RejectReason.MISSING_FIELD, "deviceId"),
        (topic("dev-A"), b'{"deviceId":7}', RejectReason.WRONG_TYPE, "deviceId"),
        (topic("dev-A"), b"[1,2]", RejectReason.NOT_AN_OBJECT, None),
        (topic("dev-A"), b"{not json", RejectReason.INVALID_JSON, None),
        (topic("dev-A"), b'{"deviceId":"\xff"}', RejectReason.INVALID_UTF8, None),
        (topic("bad id"), b'{"deviceId":"bad id"}', RejectReason.INVALID_DEVICE_ID, None),
        (f"{RULE}/wearables/dev-A/other", b'{"deviceId":"dev-A"}', RejectReason.INVALID_DEVICE_ID, None),
    ],
)
def test_unverifiable_or_spoofed_payloads_are_dead_lettered(
    topic: str, payload: bytes, reason: RejectReason, field: str | None
) -> None:
    routed = _route(topic, payload)
    assert isinstance(routed, Reject)
    assert (routed.reason, routed.field, routed.data) == (reason, field, payload)
    assert (routed.sequence_number, routed.arrival_ms) == ("42", 1_700_000_000_000)
    body = routed.to_dict()
    assert body["reason"] == reason.value
    assert topic in str(body["detail"])


def test_a_spoof_reject_names_the_topic_device_not_the_claimed_one() -> None:
    routed = _route(topic("dev-A"), b'{"deviceId":"dev-B"}')
    assert isinstance(routed, Reject)
    assert routed.device_id == "dev-A"


@pytest.mark.parametrize(
    ("pending", "oldest_ms", "now_ms", "due"),
    [
        (0, None, 10_000, False),  # nothing to send
        (1, 1_000, 1_100, False),  # lingering
        (1, 1_000, 1_200, True),  # linger elapsed
        (499, 1_000, 1_001, False),
        (500, 1_000, 1_001, True),  # full
        (501, 1_000, 1_000, True),
    ],
)
def test_flush_due(pending: int, oldest_ms: int | None, now_ms: int, due: bool) -> None:
    assert flush_due(pending, oldest_ms, now_ms, batch_size=500, linger_ms=200) is due
