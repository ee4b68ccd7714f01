"""The latest-state coalescer: which devices' items the device table gets now, and which can wait.

A device's item (its detector state and latest record) is written at most once per ``interval_ms`` —
and at once when its status or open anomalies differ from what the table last got from this owner
(the status-change rule, ``core.status_change``, which the window state shares) —
instead of once per batch. Writes carry the newest pending state, so a later write replaces every
skipped one; the table's own forward-only condition keeps a device from moving backwards.

A device this owner has not written yet is due at a point of its own within one interval (a phase
from its id), not at once: every device of a shard becomes writable at the same moment (a restore,
the first checkpoint), and writing them all then would repeat as a burst every interval. A device
that shows an anomaly or a non-normal status is still written at once.

One rule keeps takeovers exact: a device is written only once the shard's snapshot that a committed
checkpoint names holds it (``covered``). A new owner restores that snapshot and reads a device it does
not hold from the table; were the table ahead of the checkpoint for such a device, its replayed records
would be skipped as already applied. So a device first seen after the last checkpoint waits (at most
one archive file's age) for the next one.

A device that leaves the shard's resident state (``core.residency``) leaves the coalescer too
(``depart``): what it remembered of the device goes, and the write that puts the device's latest
state in the table, if the table may lack it, is handed to the caller, who must make it before the
checkpoint whose snapshot leaves the device out.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.core.records import ProcessedRecord
from service.core.state import DeviceState
from service.core.status_change import QUIET, Look, look_of, write_at_once

Write = tuple[DeviceState, ProcessedRecord | None]


@dataclass(slots=True)
class _Pending:
    state: DeviceState
    latest: ProcessedRecord | None


class LatestStateCoalescer:
    def __init__(self, interval_ms: int) -> None:
        self._interval_ms = interval_ms
        self._pending: dict[str, _Pending] = {}
        self._written_at: dict[str, int] = {}
        self._written_look: dict[str, Look] = {}
        self._covered: set[str] = set()
        self._landed: set[str] = set()  # the table holds the state this owner last gave it

    @property
    def pending(self) -> int:
        return len(self._pending)

    def cover(self, devices: Iterable[str]) -> None:
        """These devices are in the snapshot of a committed checkpoint: they may be written."""
        self._covered.update(devices)

    def observe(self, states: Mapping[str, DeviceState], latest: Mapping[str, ProcessedRecord]) -> None:
        """Devices whose state a batch moved, with their newest in-order record (when it had one)."""
        for device_id, state in states.items():
            record = latest.get(device_id)
            pending = self._pending.get(device_id)
            if pending is None:
                self._pending[device_id] = _Pending(state, record)
            else:
                pending.state = state
                pending.latest = record or pending.latest

    def due(self, now_ms: int, *, flush: bool = False) -> dict[str, Write]:
        """The writes to make now (all covered ones with ``flush``); ``written`` confirms them."""
        out: dict[str, Write] = {}
        for device_id, pending in self._pending.items():
            if device_id not in self._covered:
                continue
            written = self._written_at.get(device_id)
            if written is None:  # its first write falls due at its own phase within one interval
                written = self._written_at[device_id] = now_ms - self._phase(device_id)
            if flush or now_ms - written >= self._interval_ms or self._changed(device_id, pending.latest):
                out[device_id] = (pending.state, pending.latest)
        return out

    def depart(self, states: Mapping[str, DeviceState]) -> dict[str, Write]:
        """These devices (with their current states) leave: forget them, and return the writes that
        put their latest states in the table — the pending one, or the state itself when this owner
        has not seen a write of it land (it may come from a snapshot a previous owner never wrote)."""
        out: dict[str, Write] = {}
        for device_id, state in states.items():
            pending = self._pending.pop(device_id, None)
            if pending is not None:
                out[device_id] = (pending.state, pending.latest)
            elif device_id not in self._landed:
                out[device_id] = (state, None)
            self._landed.discard(device_id)
            self._covered.discard(device_id)
            self._written_at.pop(device_id, None)
            self._written_look.pop(device_id, None)
        return out

    def _phase(self, device_id: str) -> int:
        """How far into an interval a device not written yet is taken to be: spread by its id."""
        return zlib.crc32(device_id.encode()) % self._interval_ms if self._interval_ms else 0

    def written(self, writes: Mapping[str, Write], now_ms: int) -> None:
        """These writes landed (or were refused as behind): drop them unless newer ones came since."""
        for device_id, (state, latest) in writes.items():
            if device_id not in self._covered:  # it departed while the write was in flight
                continue
            pending = self._pending.get(device_id)
            if pending is not None and pending.state is state:
                del self._pending[device_id]
            if device_id not in self._pending:
                self._landed.add(device_id)
            self._written_at[device_id] = now_ms
            look = look_of(latest)
            if look is not None:
                self._written_look[device_id] = look

    def _changed(self, device_id: str, latest: ProcessedRecord | None) -> bool:
        """The status-change rule, against the look the table last got (``QUIET``: none yet)."""
        return write_at_once(self._written_look.get(device_id, QUIET), look_of(latest))
