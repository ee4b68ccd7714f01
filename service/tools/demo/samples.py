"""A message's samples, as the demo counts them: one per sample, whatever the message's shape.

``single_samples(payload)`` follows the batch contract (/work/notes/batch-contract.md): a batch
``{"deviceId": …, "samples": [s0, s1, …]}`` with a non-empty list gives one single-sample payload per
element, in order, ``deviceId`` put first (as the archive line of a batched sample reads); its index is
the sample's ``subSequenceNumber``. An element that is not an object, or names another device, gives a
payload the core rejects as it rejects that sample alone. Anything else (a single-sample message, a
malformed message, a broken envelope) is one sample: the payload itself.
"""

from __future__ import annotations

from typing import Any

import msgspec

FOREIGN_SAMPLE = b'{"deviceIdMismatch":true}'  # a reject stand-in (no deviceId, no timestamp)


def single_samples(payload: bytes) -> list[bytes]:
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return [payload]
    if not isinstance(body, dict) or "samples" not in body:
        return [payload]
    device_id, samples = body.get("deviceId"), body["samples"]
    if not isinstance(device_id, str) or not isinstance(samples, list) or not samples:
        return [payload]
    return [_single(device_id, sample) for sample in samples]


def _single(device_id: str, sample: Any) -> bytes:
    if not isinstance(sample, dict):
        return msgspec.json.encode(sample)
    if sample.get("deviceId", device_id) != device_id:
        return FOREIGN_SAMPLE
    return msgspec.json.encode({"deviceId": device_id} | sample)
