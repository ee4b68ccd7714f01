"""A shard snapshot: every device state a shard's owner holds, as of one checkpoint.

The bytes (``core.state_codec``, shared with the window state) are a gzip (mtime 0) msgpack map
``{"v": version, "shard": id, "seq": checkpoint, "devices": {deviceId: encode_state(state)},
"arrivals": {deviceId: epoch ms}}``: one object per checkpoint, the same bytes for the same states.
Each device state keeps its own version (``core.state``), so a snapshot written by an older release
restores through ``decode_state``'s migrations.

``arrivals`` is the Kinesis arrival time of each device's last record, from which idle devices leave
(``core.residency``). It was added without a version bump: a release that predates it ignores it,
and a snapshot without it restores each device's arrival as its last event time (``last_event_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from service.core.state import DeviceState
from service.core.state_codec import StateCodec, StateWire, decode_devices, encode_devices

SNAPSHOT_VERSION = 1


class _Snapshot(StateWire, frozen=True):
    seq: str
    devices: dict[str, bytes]
    arrivals: dict[str, int] = msgspec.field(default_factory=dict)  # absent before arrivals came


@dataclass(frozen=True, slots=True)
class ResidentSnapshot:
    shard_id: str
    sequence: str
    states: dict[str, DeviceState]
    arrivals: dict[str, int]  # an entry for every device of ``states``


_CODEC = StateCodec(_Snapshot, SNAPSHOT_VERSION, "shard snapshot")


def encode_snapshot(
    shard_id: str,
    sequence: str,
    states: Mapping[str, DeviceState],
    arrivals: Mapping[str, int] | None = None,
) -> bytes:
    """The snapshot of ``states``, with the ``arrivals`` of those devices (others are left out)."""
    known = arrivals or {}
    times = {device: known[device] for device in sorted(states) if device in known}
    return _CODEC.encode(_Snapshot(SNAPSHOT_VERSION, shard_id, sequence, encode_devices(states), times))


def decode_snapshot(blob: bytes) -> tuple[str, str, dict[str, DeviceState]]:
    """``(shard id, sequence, states)``; ``StateFormatError`` when the bytes are not a snapshot."""
    snapshot = decode_resident(blob)
    return snapshot.shard_id, snapshot.sequence, snapshot.states


def decode_resident(blob: bytes) -> ResidentSnapshot:
    """The snapshot with every device's last arrival (its ``last_event_ms`` when the snapshot has
    none for it); ``StateFormatError`` when the bytes are not a snapshot."""
    snapshot = _CODEC.decode(blob)
    states = decode_devices(snapshot.devices)
    arrivals = {
        device: snapshot.arrivals.get(device, state.last_event_ms) for device, state in states.items()
    }
    return ResidentSnapshot(snapshot.shard, snapshot.seq, states, arrivals)
