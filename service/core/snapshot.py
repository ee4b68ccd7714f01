"""A shard snapshot: every device state a shard's owner holds, as of one checkpoint.

The bytes are a gzip (mtime 0) msgpack map ``{"v": version, "shard": id, "seq": checkpoint,
"devices": {deviceId: encode_state(state)}}``: one object per checkpoint, the same bytes for the
same states. Each device state keeps its own version (``core.state``), so a snapshot written by an
older release restores through ``decode_state``'s migrations.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping

import msgspec

from service.core.state import DeviceState, StateFormatError, decode_state, encode_state

SNAPSHOT_VERSION = 1


class _Snapshot(msgspec.Struct, frozen=True):
    v: int
    shard: str
    seq: str
    devices: dict[str, bytes]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


def encode_snapshot(shard_id: str, sequence: str, states: Mapping[str, DeviceState]) -> bytes:
    devices = {device: encode_state(states[device]) for device in sorted(states)}
    body = _ENCODER.encode(_Snapshot(SNAPSHOT_VERSION, shard_id, sequence, devices))
    return gzip.compress(body, compresslevel=6, mtime=0)


def decode_snapshot(blob: bytes) -> tuple[str, str, dict[str, DeviceState]]:
    """``(shard id, sequence, states)``; ``StateFormatError`` when the bytes are not a snapshot."""
    try:
        snapshot = _DECODER.decode(gzip.decompress(blob))
    except (OSError, EOFError, msgspec.DecodeError) as exc:
        raise StateFormatError(f"not a shard snapshot: {exc}") from exc
    if snapshot.v > SNAPSHOT_VERSION:
        raise StateFormatError(f"shard snapshot version {snapshot.v} is newer than {SNAPSHOT_VERSION}")
    states = {device: decode_state(blob) for device, blob in snapshot.devices.items()}
    return snapshot.shard, snapshot.seq, states
