"""The telemetry contract: decode one JSON object and validate every rule, or say precisely why not.

The fast path is one msgspec decode into ``Telemetry``; a payload it refuses goes through ``explain``,
which checks the same rules one by one in plain Python to name the reason and the field. A property
test holds the two to the same verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from service.core.records import RejectReason

INT64_MAX = 2**63 - 1
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # also ``_DEVICE_ID``, as msgspec wants it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


_DEVICE_ID = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"\A[A-Za-z0-9_.:-]+\Z")]


class Reading(msgspec.Struct, frozen=True, gc=False):
    """One wearable sample's readings. ``timestamp``'s syntax is checked by ``TimestampParser``, the
    other rules here."""

    timestamp: str
    heartRate: Annotated[int, msgspec.Meta(ge=0, le=300)]
    steps: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    spo2: Annotated[int, msgspec.Meta(ge=50, le=100)] | None = None
    skinTemp: float | None = None
    battery: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    seq: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)] | None = None


class Telemetry(Reading, frozen=True, gc=False, kw_only=True):
    """A single-sample message: the readings and the device that took them."""

    deviceId: _DEVICE_ID


class BatchedReading(Reading, frozen=True, gc=False, kw_only=True):
    """A sample inside a batch: its device is the envelope's; a ``deviceId`` of its own must match."""

    deviceId: str | None = None


TELEMETRY_DECODER = msgspec.json.Decoder(Telemetry)
BATCHED_READING_DECODER = msgspec.json.Decoder(BatchedReading)


@dataclass(frozen=True, slots=True)
class Violation:
    reason: RejectReason
    field: str | None
    detail: str
    device_id: str | None = None


def check_device_id(device_id: str) -> bool:
    return DEVICE_ID_PATTERN.fullmatch(device_id) is not None


class TimestampParser:
    """RFC 3339 → epoch ms. The canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` form costs two slices and a
    dict hit (one parse per distinct minute); any other form takes the general parser."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[str, int] = {}

    def event_ms(self, ts: str) -> int | None:
        if len(ts) == 24 and ts[23] == "Z" and ts[19] == ".":
            base = self._minutes.get(ts[:17])
            if base is None:
                parsed = parse_rfc3339_ms(ts[:17] + "00Z")
                base = self._minutes[ts[:17]] = -1 if parsed is None else parsed
            millis = ts[17:19] + ts[20:23]  # "SSmmm": seconds and milliseconds as one number
            if base >= 0 and millis.isdigit() and millis.isascii() and millis < "60000":
                return base + int(millis)
        return parse_rfc3339_ms(ts)


_RFC3339 = Annotated[datetime, msgspec.Meta(tz=True)]


def parse_rfc3339_ms(ts: str) -> int | None:
    """Epoch milliseconds (floored) of an RFC 3339 date-time with offset, or None if it is not one."""
    if len(ts) < 20 or ts[10] not in "Tt":
        return None
    try:
        moment = msgspec.convert(ts, _RFC3339)
    except msgspec.ValidationError:
        return None
    return (moment - _EPOCH) // _MS


_REQUIRED_INT_RULES: tuple[tuple[str, int, int], ...] = (("heartRate", 0, 300), ("steps", 0, INT64_MAX))
_OPTIONAL_INT_RULES: tuple[tuple[str, int, int], ...] = (
    ("spo2", 50, 100),
    ("battery", 0, 100),
    ("seq", 0, INT64_MAX),
)


def utf8_violation(data: bytes) -> Violation | None:
    """An ``invalid_utf8`` violation when ``data`` is not UTF-8 anywhere, else None. msgspec's
    decoders skip unknown fields without checking their bytes (and older releases report bad UTF-8
    in a string as a ``UnicodeDecodeError``, newer ones as a ``DecodeError``), so callers check here
    rather than rely on which error a decoder raises. An ASCII payload costs one scan."""
    if data.isascii():
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Violation(RejectReason.INVALID_UTF8, None, f"byte {exc.start} is not UTF-8")
    return None


def explain(data: bytes) -> Violation:
    """Why ``data`` is not valid telemetry. Call it only for payloads the fast path refused."""
    obj = _json_object(data)
    if isinstance(obj, Violation):
        return obj
    return explain_object(obj) or _unexplained()


def explain_sample(data: bytes, device_id: str) -> Violation:
    """Why ``data``, a sample of a batch from ``device_id``, is not a valid sample. Call it only for
    samples the fast path refused."""
    obj = _json_object(data)
    if isinstance(obj, Violation):
        return obj
    own = obj.get("deviceId", device_id)
    if own != device_id:
        return Violation(
            RejectReason.DEVICE_ID_MISMATCH, "deviceId", "a sample's deviceId must be its batch's", device_id
        )
    violation = _explain_fields(obj) or _unexplained()
    return Violation(violation.reason, violation.field, violation.detail, device_id)


def device_id_violation(device_id: object) -> Violation | None:
    """Why ``device_id`` (a decoded JSON value) is not a device id, or None when it is one."""
    if device_id is None:
        return Violation(RejectReason.MISSING_FIELD, "deviceId", "deviceId is required")
    if not isinstance(device_id, str):
        return Violation(RejectReason.WRONG_TYPE, "deviceId", "deviceId must be a string")
    if not check_device_id(device_id):
        return Violation(
            RejectReason.INVALID_DEVICE_ID, "deviceId", "deviceId must be 1-128 chars of [A-Za-z0-9_.:-]"
        )
    return None


def explain_object(obj: dict[str, Any]) -> Violation | None:
    """The first broken rule of a decoded JSON object, or None when every rule holds."""
    device_id = obj.get("deviceId")
    bad_id = device_id_violation(device_id)
    if bad_id is not None:
        return bad_id
    violation = _explain_fields(obj)
    if violation is None:
        return None
    return Violation(violation.reason, violation.field, violation.detail, device_id)


def _json_object(data: bytes) -> dict[str, Any] | Violation:
    not_utf8 = utf8_violation(data)
    if not_utf8 is not None:
        return not_utf8
    try:
        obj: Any = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        return Violation(RejectReason.INVALID_JSON, None, str(exc))
    if not isinstance(obj, dict):
        return Violation(RejectReason.NOT_AN_OBJECT, None, f"top-level JSON is {type(obj).__name__}")
    return obj


def _unexplained() -> Violation:
    return Violation(RejectReason.INVALID_JSON, None, "refused by the decoder but no rule names a cause")


def _explain_fields(obj: dict[str, Any]) -> Violation | None:
    timestamp = obj.get("timestamp")
    if timestamp is None:
        return Violation(RejectReason.MISSING_FIELD, "timestamp", "timestamp is required")
    if not isinstance(timestamp, str):
        return Violation(RejectReason.WRONG_TYPE, "timestamp", "timestamp must be a string")
    if parse_rfc3339_ms(timestamp) is None:
        return Violation(
            RejectReason.INVALID_TIMESTAMP, "timestamp", "timestamp must be RFC 3339 with an offset or Z"
        )
    for name, _, _ in _REQUIRED_INT_RULES:
        if obj.get(name) is None:
            return Violation(RejectReason.MISSING_FIELD, name, f"{name} is required")
    for name, low, high in _REQUIRED_INT_RULES + _OPTIONAL_INT_RULES:
        violation = _explain_int(name, obj.get(name), low, high)
        if violation is not None:
            return violation
    skin_temp = obj.get("skinTemp")
    if skin_temp is not None and (isinstance(skin_temp, bool) or not isinstance(skin_temp, int | float)):
        return Violation(RejectReason.WRONG_TYPE, "skinTemp", "skinTemp must be a number")
    return None


def _explain_int(name: str, value: object, low: int, high: int) -> Violation | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return Violation(RejectReason.WRONG_TYPE, name, f"{name} must be an integer")
    if not low <= value <= high:
        return Violation(RejectReason.OUT_OF_RANGE, name, f"{name}={value} is outside {low}..{high}")
    return None
