"""The bridge's decisions without a broker: topic parsing, the device-id check, batch flushing."""

from __future__ import annotations

import json

import pytest

from service.core import Reject, RejectReason
from service.runtime.bridge_routing import flush_due, route, topic_device_id
from service.runtime.publishing import Message


@pytest.mark.parametrize(
    ("topic", "device_id"),
    [
        ("wearables/dev-1/telemetry", "dev-1"),
        ("wearables/a.b:c_d-9/telemetry", "a.b:c_d-9"),
        ("wearables//telemetry", None),
        ("wearables/dev-1/status", None),
        ("wearables/dev-1/telemetry/extra", None),
        ("other/dev-1/telemetry", None),
        ("dev-1", None),
    ],
)
def test_topic_device_id(topic: str, device_id: str | None) -> None:
    assert topic_device_id(topic) == device_id


def _route(topic: str, payload: bytes) -> Message | Reject:
    return route(topic, payload, arrival_ms=1_700_000_000_000, sequence_number="42")


def test_a_payload_matching_its_topic_is_forwarded_unchanged_keyed_by_the_topic() -> None:
    payload = json.dumps({"deviceId": "dev-1", "heartRate": 70, "extra": [1]}).encode()
    routed = _route("wearables/dev-1/telemetry", payload)
    assert routed == Message(
        device_id="dev-1", payload=payload, event_ms=1_700_000_000_000, send_ms=1_700_000_000_000
    )


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "field"),
    [
        (
            "wearables/dev-A/telemetry",
            b'{"deviceId":"dev-B","heartRate":70}',
            RejectReason.DEVICE_ID_MISMATCH,
            "deviceId",
        ),
        ("wearables/dev-A/telemetry", b'{"deviceId":"dev-a"}', RejectReason.DEVICE_ID_MISMATCH, "deviceId"),
        ("wearables/dev-A/telemetry", b'{"heartRate":70}', RejectReason.MISSING_FIELD, "deviceId"),
        ("wearables/dev-A/telemetry", b'{"deviceId":null}', RejectReason.MISSING_FIELD, "deviceId"),
        ("wearables/dev-A/telemetry", b'{"deviceId":7}', RejectReason.WRONG_TYPE, "deviceId"),
        ("wearables/dev-A/telemetry", b"[1,2]", RejectReason.NOT_AN_OBJECT, None),
        ("wearables/dev-A/telemetry", b"{not json", RejectReason.INVALID_JSON, None),
        ("wearables/dev-A/telemetry", b'{"deviceId":"\xff"}', RejectReason.INVALID_UTF8, None),
        ("wearables/bad id/telemetry", b'{"deviceId":"bad id"}', RejectReason.INVALID_DEVICE_ID, None),
        ("wearables/dev-A/other", b'{"deviceId":"dev-A"}', RejectReason.INVALID_DEVICE_ID, None),
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
    routed = _route("wearables/dev-A/telemetry", b'{"deviceId":"dev-B"}')
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
