"""A Lambda tumbling window's state: the shard's device states between invocations of one window.

Lambda mode with ``TumblingWindowInSeconds`` keeps each device's detector state in the window state
that Lambda hands from one invocation of a shard's window to the next, instead of reading and writing
the device table every batch. A ``WindowState`` holds, for every device the window has seen:

- ``states``: its detector state as of the last record whose effects all landed;
- ``latest``: the latest-state view of its newest in-order record (``LatestView``), so the window's
  last invocation, which carries no records, can still write the device's item;
- ``dirty``: the devices whose state moved since the device table last took it.

The bytes are a gzip (mtime 0) msgpack map ``{"v": version, "shard": id, "devices": {deviceId:
encode_state(state)}, "latest": {deviceId: LatestView}, "dirty": [deviceId, ...]}``: the same bytes
for the same window, and each device state keeps its own version (``core.state``), so a window state
written by an older release decodes through ``decode_state``'s migrations: the one codec of device
states at rest (``core.state_codec``), shared with the shard snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import msgspec

from service.core.anomalies import AnomalyType, Status
from service.core.records import ProcessedRecord, iso_ms
from service.core.state import DeviceState
from service.core.state_codec import StateCodec, StateWire, decode_devices, encode_devices
from service.core.status_change import look_of, write_at_once

WINDOW_STATE_VERSION = 1


class LatestView(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the device item's latest-state attributes need from a processed record (not its body)."""

    event_ms: int
    heart_rate: int
    steps: int
    spo2: int | None
    skin_temp: float | None
    battery: int | None
    processed_at_ms: int
    status: Status
    anomalies: tuple[AnomalyType, ...]
    sequence_number: str
    sub_sequence_number: int | None

    @classmethod
    def of(cls, record: ProcessedRecord) -> LatestView:
        return cls(
            record.event_ms,
            record.heart_rate,
            record.steps,
            record.spo2,
            record.skin_temp,
            record.battery,
            record.processed_at_ms,
            record.status,
            record.anomalies,
            record.sequence_number,
            record.sub_sequence_number,
        )

    def record(self, device_id: str, shard_id: str) -> ProcessedRecord:
        """A processed record with this view's values and no body, for the device item only."""
        return ProcessedRecord(
            raw=b"",
            device_id=device_id,
            event_ms=self.event_ms,
            heart_rate=self.heart_rate,
            steps=self.steps,
            spo2=self.spo2,
            skin_temp=self.skin_temp,
            battery=self.battery,
            device_seq=None,
            processed_at_ms=self.processed_at_ms,
            processed_at=iso_ms(self.processed_at_ms),
            status=self.status,
            anomalies=self.anomalies,
            shard_id=shard_id,
            sequence_number=self.sequence_number,
            sub_sequence_number=self.sub_sequence_number,
            out_of_order=False,
        )


@dataclass(frozen=True, slots=True)
class WindowState:
    shard_id: str
    states: dict[str, DeviceState] = field(default_factory=dict)
    latest: dict[str, LatestView] = field(default_factory=dict)
    dirty: frozenset[str] = frozenset()
    arrivals: dict[str, int] = field(default_factory=dict)  # when each device's newest record arrived

    def advanced(
        self,
        loaded: Mapping[str, DeviceState],
        moved: Mapping[str, DeviceState],
        latest: Mapping[str, ProcessedRecord],
        failed: Collection[str],
    ) -> WindowState:
        """The window after one batch: ``loaded`` (read from the table) join as they are; the states a
        batch ``moved`` join, dirty, except for ``failed`` devices, which keep what they had (their
        records come again). ``latest``: each device's newest in-order record of the batch."""
        states = {**loaded, **self.states}
        views, arrivals = dict(self.latest), dict(self.arrivals)
        dirty = set(self.dirty)
        for device_id, state in moved.items():
            if device_id in failed:
                continue
            states[device_id] = state
            dirty.add(device_id)
            record = latest.get(device_id)
            if record is not None:
                views[device_id] = LatestView.of(record)
                arrivals[device_id] = record.arrival_ms
        return WindowState(self.shard_id, states, views, frozenset(dirty), arrivals)

    def changed_looks(self, before: WindowState) -> set[str]:
        """Dirty devices whose status or open anomalies differ from their view in ``before``: their
        items are written at once (``core.status_change``, the rule the coalescer follows too). Only
        devices ``before`` already held: one the window reads from the table this very batch waits for
        the window's end, so that a retry of the batch (with ``before`` again) reads the same table and
        yields the same state."""
        return {
            device_id
            for device_id in self.dirty
            if write_at_once(look_of(before.latest.get(device_id)), look_of(self.latest.get(device_id)))
        }

    def cleaned(self, written: Collection[str]) -> WindowState:
        """The device table took these devices' states: they are no longer dirty."""
        return WindowState(
            self.shard_id, self.states, self.latest, self.dirty - frozenset(written), self.arrivals
        )

    def only(self, devices: Collection[str]) -> WindowState:
        """The window's dirty ``devices`` alone (what a final invocation hands on)."""
        kept = sorted(d for d in devices if d in self.dirty)
        return WindowState(
            self.shard_id,
            {d: self.states[d] for d in kept},
            {d: self.latest[d] for d in kept if d in self.latest},
            frozenset(kept),
            {d: self.arrivals[d] for d in kept if d in self.arrivals},
        )

    def adopting(self, handed: WindowState) -> WindowState:
        """This window with the devices an earlier window ``handed`` on (``core.window_handoff``): they
        join as they were handed, dirty, over anything this window read of them."""
        return WindowState(
            self.shard_id,
            {**self.states, **handed.states},
            {**self.latest, **handed.latest},
            self.dirty | handed.dirty,
            {**self.arrivals, **handed.arrivals},
        )

    def pending(self) -> tuple[dict[str, DeviceState], dict[str, ProcessedRecord]]:
        """The dirty devices' states and latest records, as ``DeviceStateStore.save`` takes them."""
        states = {d: self.states[d] for d in sorted(self.dirty)}
        latest = {d: self.latest[d].record(d, self.shard_id) for d in states if d in self.latest}
        return states, latest


class _Wire(StateWire, frozen=True, omit_defaults=True):
    devices: dict[str, bytes]
    latest: dict[str, LatestView]
    dirty: list[str]
    arrivals: dict[str, int] = msgspec.field(default_factory=dict)  # absent in states written before it


_CODEC = StateCodec(_Wire, WINDOW_STATE_VERSION, "window state")


def encode_window_state(window: WindowState) -> bytes:
    devices = encode_devices(window.states)
    latest = {device: window.latest[device] for device in sorted(window.latest)}
    arrivals = {device: window.arrivals[device] for device in sorted(window.arrivals)}
    return _CODEC.encode(
        _Wire(WINDOW_STATE_VERSION, window.shard_id, devices, latest, sorted(window.dirty), arrivals)
    )


def decode_window_state(blob: bytes) -> WindowState:
    """``StateFormatError`` when the bytes are not a window state (or one newer than this release)."""
    wire = _CODEC.decode(blob)
    states, latest, dirty = decode_devices(wire.devices), dict(wire.latest), frozenset(wire.dirty)
    return WindowState(wire.shard, states, latest, dirty, dict(wire.arrivals))
