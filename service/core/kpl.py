"""De-aggregation of KPL-aggregated Kinesis records.

Wire format (the KPL's ``aggregation-format.md``): 4 magic bytes, a protobuf ``AggregatedRecord``,
then the MD5 of the protobuf bytes. Only the fields we need are read: the partition-key table
(field 1) and each inner record's partition-key index (1) and data (3).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_SIZE = 16
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class AggregateError(ValueError):
    """The payload carries the KPL magic but is not a well-formed aggregate."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    partition_key: str
    data: bytes


def is_aggregated(data: bytes) -> bool:
    return data[:4] == KPL_MAGIC


def deaggregate(data: bytes) -> list[UserRecord]:
    """The user records inside an aggregated payload, in order (their sub-sequence numbers)."""
    if len(data) < len(KPL_MAGIC) + _DIGEST_SIZE:
        raise AggregateError("shorter than magic + digest")
    message, digest = data[len(KPL_MAGIC) : -_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.md5(message, usedforsecurity=False).digest() != digest:
        raise AggregateError("MD5 digest does not match the aggregated message")
    keys: list[str] = []
    entries: list[tuple[int, bytes]] = []
    for field, value in _fields(message):
        if field == 1 and isinstance(value, bytes):
            keys.append(value.decode("utf-8", errors="replace"))
        elif field == 3 and isinstance(value, bytes):
            entries.append(_inner_record(value))
    records = []
    for key_index, payload in entries:
        if key_index >= len(keys):
            raise AggregateError(f"partition key index {key_index} outside a table of {len(keys)}")
        records.append(UserRecord(keys[key_index], payload))
    return records


def _inner_record(message: bytes) -> tuple[int, bytes]:
    key_index: int | None = None
    payload: bytes | None = None
    for field, value in _fields(message):
        if field == 1 and isinstance(value, int):
            key_index = value
        elif field == 3 and isinstance(value, bytes):
            payload = value
    if key_index is None or payload is None:
        raise AggregateError("inner record lacks partition_key_index or data")
    return key_index, payload


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    pos, end = 0, len(message)
    while pos < end:
        tag, pos = _varint(message, pos)
        field, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(message, pos)
            fields.append((field, value))
        elif wire == _LENGTH_DELIMITED:
            size, pos = _varint(message, pos)
            if pos + size > end:
                raise AggregateError("length-delimited field runs past the message")
            fields.append((field, message[pos : pos + size]))
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise AggregateError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise AggregateError("truncated fixed-width field")
    return fields


def _varint(message: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(message) or shift > 63:
            raise AggregateError("truncated or overlong varint")
        byte = message[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
