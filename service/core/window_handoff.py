"""A Lambda window's handoff: the device states its final invocation leaves for the shard's next window.

A tumbling window's state ends with the window. Writing every device it moved to the device table in its
final invocation holds the shard for as long as those writes take — seconds at thousands of devices —
and every alert behind it waits. So the final invocation writes a few and hands the rest on: one object
per shard, ``Handoff`` — the window's end and a window state (``core.window_state``) of just the devices
it hands on. The shard's next window adopts them as its own dirty devices and writes them paced
(``runtime.window``); a child shard adopts the devices of its parents' handoffs that hash into its
range (Kinesis routes a record by the MD5 of its partition key, the device id).

The bytes are a gzip (mtime 0) msgpack map ``{"v": version, "shard": id, "end": window end (epoch ms),
"window": window-state bytes}``: the same devices, the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.core.state_codec import StateCodec, StateWire
from service.core.window_state import WindowState, decode_window_state, encode_window_state

HANDOFF_VERSION = 1


def hash_key(device_id: str) -> int:
    """The 128-bit hash key Kinesis maps a record with partition key ``device_id`` to."""
    return int.from_bytes(hashlib.md5(device_id.encode(), usedforsecurity=False).digest(), "big")


@dataclass(frozen=True, slots=True)
class HashRange:
    """A shard's hash key range, both ends included (``HashKeyRange`` in ``ListShards``)."""

    first: int
    last: int

    def holds(self, device_id: str) -> bool:
        return self.first <= hash_key(device_id) <= self.last


@dataclass(frozen=True, slots=True)
class Handoff:
    """Devices a window of ``shard_id`` handed on (all dirty), as of its end ``end_ms``."""

    end_ms: int
    window: WindowState

    @property
    def shard_id(self) -> str:
        return self.window.shard_id

    @property
    def devices(self) -> frozenset[str]:
        return self.window.dirty

    def within(self, hash_range: HashRange) -> Handoff:
        """The devices a shard of ``hash_range`` takes over from this one (a parent's handoff)."""
        return Handoff(self.end_ms, self.window.only({d for d in self.devices if hash_range.holds(d)}))


class _Wire(StateWire, frozen=True):
    end: int
    window: bytes


_CODEC = StateCodec(_Wire, HANDOFF_VERSION, "window handoff")


def handoff_of(window: WindowState, devices: set[str] | frozenset[str], end_ms: int) -> Handoff:
    """``window``'s ``devices`` (dirty ones), handed on at the window's end ``end_ms``."""
    return Handoff(end_ms, window.only(devices))


def encode_handoff(handoff: Handoff) -> bytes:
    window = encode_window_state(handoff.window)
    return _CODEC.encode(_Wire(HANDOFF_VERSION, handoff.shard_id, handoff.end_ms, window))


def decode_handoff(blob: bytes) -> Handoff:
    """``StateFormatError`` when the bytes are not a handoff (or one newer than this release)."""
    wire = _CODEC.decode(blob)
    return Handoff(wire.end, decode_window_state(wire.window))
