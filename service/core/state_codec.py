"""The one codec of device states at rest: shard snapshots and Lambda window states.

Both kinds are a gzip (mtime 0) msgpack map of a wire struct that starts with ``v`` (its version)
and ``shard`` (its shard id), and holds each device's state as ``encode_state`` bytes. Each kind
declares its own wire struct (a subclass of ``StateWire``: its fields are its format) and version;
this codec owns what they share:

- the same states give the same bytes (devices sorted, no gzip timestamp);
- each device state keeps its own version (``core.state``): state written by an older release
  decodes through ``decode_state``'s migrations;
- bytes that are not of the kind, or of a version newer than this release reads, raise
  ``StateFormatError`` — never a partial state.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Generic, TypeVar

import msgspec

from service.core.state import DeviceState, StateFormatError, decode_state, encode_state


class StateWire(msgspec.Struct, frozen=True):
    """The head every kind of stored device states starts with."""

    v: int
    shard: str


W = TypeVar("W", bound=StateWire)


class StateCodec(Generic[W]):
    """Bytes ⇄ ``W`` for one kind of stored device states (``kind`` names it in errors)."""

    def __init__(self, wire: type[W], version: int, kind: str) -> None:
        self.version = version
        self.kind = kind
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(wire)

    def encode(self, wire: W) -> bytes:
        return gzip.compress(self._encoder.encode(wire), compresslevel=6, mtime=0)

    def decode(self, blob: bytes) -> W:
        """``StateFormatError`` when ``blob`` is not this kind, or a version newer than ``version``."""
        try:
            wire = self._decoder.decode(gzip.decompress(blob))
        except (OSError, EOFError, msgspec.DecodeError) as exc:
            raise StateFormatError(f"not a {self.kind}: {exc}") from exc
        if wire.v > self.version:
            raise StateFormatError(f"{self.kind} version {wire.v} is newer than {self.version}")
        return wire


def encode_devices(states: Mapping[str, DeviceState]) -> dict[str, bytes]:
    """Every device's state bytes, by device id in order (the same states, the same bytes)."""
    return {device: encode_state(states[device]) for device in sorted(states)}


def decode_devices(devices: Mapping[str, bytes]) -> dict[str, DeviceState]:
    """Every device's state, migrated to the current version; ``StateFormatError`` if one is not."""
    return {device: decode_state(blob) for device, blob in devices.items()}
