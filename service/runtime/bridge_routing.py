"""The MQTT bridge's decisions, pure: which device a topic names, whether a message is forwarded to
Kinesis or dead-lettered, and when the pending batch is due. ``bridge`` runs them in its MQTT loop.

Contract (the rest of the bridge's is in ``bridge``): the device id comes from the Basic Ingest topic
``$aws/rules/{rule}/wearables/{deviceId}/telemetry`` (``ingest_topic``: the topic devices publish to on
IoT Core too); a payload whose ``deviceId`` differs from it, or that has no readable ``deviceId`` (not
UTF-8 JSON, not an object, missing, not a string), is a ``Reject`` with its reason and is never
forwarded; everything else is forwarded unchanged as a ``Message`` keyed by the topic's device id. A
batch ``{"deviceId": ..., "samples": [...]}`` is checked by its envelope's ``deviceId`` (its samples are
the core's to validate, one by one, as they are for a message IoT Core's rule forwarded).
"""

from __future__ import annotations

import msgspec

from service.core import Reject, RejectReason
from service.core.telemetry import DEVICE_ID_PATTERN, utf8_violation
from service.runtime.ingest_topic import DEFAULT_RULE, topic_device_id
from service.runtime.publishing import Message

SHARD_ID = "mqtt-bridge"  # the dead-letter "shard" of rejects the bridge makes


def route(
    topic: str, payload: bytes, *, arrival_ms: int, sequence_number: str, rule: str = DEFAULT_RULE
) -> Message | Reject:
    """Forward (a ``Message`` keyed by the topic's device id) or dead-letter (a ``Reject``)."""

    def reject(reason: RejectReason, field: str | None, detail: str, device_id: str | None) -> Reject:
        return Reject(
            data=payload,
            shard_id=SHARD_ID,
            sequence_number=sequence_number,
            arrival_ms=arrival_ms,
            reason=reason,
            field=field,
            detail=f"topic {topic}: {detail}",
            device_id=device_id,
        )

    device_id = topic_device_id(topic, rule)
    if device_id is None or DEVICE_ID_PATTERN.fullmatch(device_id) is None:
        return reject(RejectReason.INVALID_DEVICE_ID, None, "not a valid telemetry topic", None)
    not_utf8 = utf8_violation(payload)
    if not_utf8 is not None:
        return reject(not_utf8.reason, None, f"payload is not UTF-8: {not_utf8.detail}", device_id)
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return reject(RejectReason.INVALID_JSON, None, "payload is not JSON", device_id)
    if not isinstance(body, dict):
        return reject(RejectReason.NOT_AN_OBJECT, None, "payload is not a JSON object", device_id)
    claimed = body.get("deviceId")
    if claimed is None:
        return reject(RejectReason.MISSING_FIELD, "deviceId", "payload has no deviceId", device_id)
    if not isinstance(claimed, str):
        return reject(RejectReason.WRONG_TYPE, "deviceId", "deviceId is not a string", device_id)
    if claimed != device_id:
        detail = f"payload deviceId {claimed!r} is not the topic's"
        return reject(RejectReason.DEVICE_ID_MISMATCH, "deviceId", detail, device_id)
    return Message(device_id=device_id, payload=payload, event_ms=arrival_ms, send_ms=arrival_ms)


def flush_due(pending: int, oldest_ms: int | None, now_ms: int, batch_size: int, linger_ms: int) -> bool:
    """True when the pending batch is full or its oldest message has waited ``linger_ms``."""
    if pending == 0 or oldest_ms is None:
        return False
    return pending >= batch_size or now_ms - oldest_ms >= linger_ms
