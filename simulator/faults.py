"""Malformed payloads, as a broken device or gateway produces them.

Every variant is a reject under the telemetry contract, and none contains a line break, so a
JSON Lines file of payloads keeps one payload per line:

- ``TRUNCATED``: the JSON cut short (a lost tail) — not parseable.
- ``WRONG_TYPE``: valid JSON, but ``heartRate`` is a string.
- ``GARBAGE``: bytes that are not UTF-8 at all (a corrupt frame).

Inside a batch (``malformed_sample``) the broken sample must not break its message: ``WRONG_TYPE``
stays an object (without ``deviceId``, as every batched sample), ``TRUNCATED`` and ``GARBAGE`` become a
JSON string holding the broken frame (a gateway passing on what it could not parse): either way that
sample alone is a reject, its batch-mates are valid.
"""

from __future__ import annotations

from random import Random

import msgspec

MALFORMED_VARIANTS = ("TRUNCATED", "WRONG_TYPE", "GARBAGE")


def malformed_payload(payload: bytes, rng: Random) -> tuple[bytes, str]:
    """A malformed stand-in for the valid ``payload`` and the name of its variant."""
    variant = MALFORMED_VARIANTS[rng.randrange(len(MALFORMED_VARIANTS))]
    if variant == "TRUNCATED":
        return payload[: rng.randrange(1, len(payload) - 1)], variant
    if variant == "WRONG_TYPE":
        start = payload.index(b'"heartRate":') + len(b'"heartRate":')
        end = payload.index(b",", start)
        return payload[:start] + b'"' + payload[start:end] + b'"' + payload[end:], variant
    size = rng.randrange(8, 64)
    # 0xFF never occurs in UTF-8; 0x0A/0x0D (line breaks) are excluded by drawing from 0x80..0xFF.
    return b"\xff" + bytes(rng.randrange(0x80, 0x100) for _ in range(size)), variant


def malformed_sample(payload: bytes, variant: str, device_head: int) -> bytes:
    """The batched form of a malformed single-sample ``payload`` (its first ``device_head`` bytes are
    ``{"deviceId":"…",``), as one element of ``samples``."""
    if variant == "WRONG_TYPE":
        return b"{" + payload[device_head:]
    return msgspec.json.encode(payload.decode("latin-1"))
