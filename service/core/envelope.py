"""Batched messages: ``{"deviceId": "...", "samples": [{...}, ...]}`` opened into its samples' bytes.

A message whose top-level object has a ``samples`` member is a batch; any other message is a single
sample (``telemetry``). Opening a batch checks the envelope only — device id, ``samples`` a list of 1
to ``MessageLimits.max_samples`` — and hands back each sample's bytes exactly as sent, so each sample
is then decoded, validated and rejected on its own. A broken envelope is one ``Violation`` for the
whole message.

Envelope members other than ``deviceId`` and ``samples`` (a firmware version, say) belong to every
sample: ``Batch.prefix`` is the start of every sample's archive line, ``{"deviceId":"…",`` plus
those members, so one table reads single and batched messages alike. The common compact envelope
costs one decode; any other layout (whitespace, extra members) costs a second, top-level one.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

import msgspec

from service.core.records import RejectReason
from service.core.telemetry import BatchedReading, Violation, device_id_violation, utf8_violation

DEFAULT_MAX_SAMPLES = 40  # ≈ 5 KB of ≈ 125-byte samples: IoT Core meters messages in 5 KB steps
DEFAULT_MAX_BYTES = 131_072  # IoT Core's largest message
_SAMPLES_KEY = b'"samples"'


class MessageLimits(NamedTuple):
    """The largest message the core opens: ``max_samples`` samples, ``max_bytes`` bytes (a KPL
    aggregate's user records are messages of their own)."""

    max_samples: int = DEFAULT_MAX_SAMPLES
    max_bytes: int = DEFAULT_MAX_BYTES


DEFAULT_LIMITS = MessageLimits()


class Batch(NamedTuple):
    device_id: str
    samples: list[msgspec.Raw]
    prefix: bytes  # each sample's archive line starts with it, in place of the sample's own "{"
    readings: list[BatchedReading] | None  # every sample decoded, when all are valid and the bytes ASCII


class _Envelope(msgspec.Struct, gc=False):
    deviceId: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"\A[A-Za-z0-9_.:-]+\Z")]
    samples: list[msgspec.Raw]


class _Readings(msgspec.Struct, gc=False):
    samples: list[BatchedReading]


_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)
_READINGS_DECODER = msgspec.json.Decoder(_Readings)
_MEMBERS_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])


def too_large(data: bytes, limits: MessageLimits) -> Violation | None:
    if len(data) <= limits.max_bytes:
        return None
    return Violation(
        RejectReason.MESSAGE_TOO_LARGE, None, f"message of {len(data)} bytes; at most {limits.max_bytes}"
    )


def open_batch(data: bytes, limits: MessageLimits) -> Batch | Violation | None:
    """The batch in ``data``, why its envelope is broken, or None when ``data`` is not a batch."""
    if _SAMPLES_KEY not in data:
        return None
    try:
        envelope = _ENVELOPE_DECODER.decode(data)
    except (msgspec.MsgspecError, ValueError):  # ValueError: msgspec's UnicodeDecodeError
        return _explain_envelope(data)
    device_id, samples = envelope.deviceId, envelope.samples
    count = len(samples)
    if count == 0:
        return Violation(RejectReason.OUT_OF_RANGE, "samples", "samples must not be empty", device_id)
    if count > limits.max_samples:
        return Violation(
            RejectReason.TOO_MANY_SAMPLES,
            "samples",
            f"{count} samples; at most {limits.max_samples} in one message",
            device_id,
        )
    compact = 27 + len(device_id) + sum(map(len, samples)) + count  # '{"deviceId":"…","samples":[…]}'
    prefix = b'{"deviceId":"%s",' % device_id.encode()
    if len(data) != compact:
        prefix = _prefix_with_members(data, prefix)
    return Batch(device_id, samples, prefix, _readings(data))


def _readings(data: bytes) -> list[BatchedReading] | None:
    """Every sample decoded in one call — the common case, a valid ASCII batch — or None: then each
    sample is decoded (and explained) on its own."""
    if not data.isascii():
        return None
    try:
        return _READINGS_DECODER.decode(data).samples
    except (msgspec.MsgspecError, ValueError):
        return None


def _prefix_with_members(data: bytes, prefix: bytes) -> bytes:
    members = _MEMBERS_DECODER.decode(data)
    extra = b"".join(
        b"%b:%b," % (msgspec.json.encode(name), bytes(value))
        for name, value in members.items()
        if name not in ("deviceId", "samples")
    )
    return prefix + extra


def _explain_envelope(data: bytes) -> Violation | None:
    """Why the envelope decoder refused ``data``; None when it is no batch after all (no top-level
    ``samples``: the word was inside a string or a nested object)."""
    not_utf8 = utf8_violation(data)
    try:
        obj: Any = msgspec.json.decode(data)
    except (msgspec.DecodeError, ValueError):
        return not_utf8
    if not isinstance(obj, dict) or "samples" not in obj:
        return None
    if not_utf8 is not None:
        return not_utf8
    bad_id = device_id_violation(obj.get("deviceId"))
    if bad_id is not None:
        return bad_id
    return Violation(RejectReason.WRONG_TYPE, "samples", "samples must be a list", obj["deviceId"])
