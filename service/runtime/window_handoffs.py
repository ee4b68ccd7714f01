"""Where a shard's window finds the devices handed on to it, and where it hands its own on.

A window's first invocation takes over (``WindowHandoffs.taken_over``):

- the shard's own handoff, written by the final invocation of its previous window; or, when the shard
  never wrote one (its first window: a new stream, or a child after a split or a merge), its parents'
  handoffs (``ShardLineage``), each cut to the devices that hash into the shard's range — a split's two
  children each take their own half, and a parent's handoff is never rewritten after the parent ends,
  so every retry of the child's first invocation takes the same;
- a handoff is *fresh* when it ends at most one window before this window starts (a shard with records
  at its close gets its next ones within seconds): its devices are adopted. An older one (the shard was
  idle for a while, or the function was switched off and on) is *stale*: its devices are written to the
  device table as they are — forward-only writes, so a table that moved on since keeps what it has —
  and read again from the table when they send.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from service.core.window_handoff import Handoff, decode_handoff, encode_handoff, handoff_of
from service.core.window_state import WindowState
from service.runtime.ports import DeviceStateStore, HandoffStore, ShardLineage, Sink, causes_of


@dataclass(frozen=True, slots=True)
class Takeover:
    """What a window's first invocation starts from. ``own_empty``: the shard's own handoff exists and
    holds nothing (its close need not write another empty one)."""

    adopted: WindowState
    stale: WindowState
    own_empty: bool = False


@dataclass(frozen=True, slots=True)
class WindowHandoffs:
    store: HandoffStore
    lineage: ShardLineage

    def taken_over(self, stream: str, shard_id: str, start_ms: int, end_ms: int) -> Takeover:
        """The devices handed on to the window ``[start_ms, end_ms)`` of ``stream``'s ``shard_id``."""
        own = self.store.get(shard_id)
        if own is not None:
            handed = [decode_handoff(own)]
        else:
            line = self.lineage.of(stream, shard_id)
            blobs = [self.store.get(parent) for parent in line.parents]
            handed = [decode_handoff(blob).within(line.hash_range) for blob in blobs if blob is not None]
        adopted, stale = WindowState(shard_id), WindowState(shard_id)
        for handoff in handed:
            if _fresh(handoff, start_ms, end_ms):
                adopted = adopted.adopting(handoff.window)
            else:
                stale = stale.adopting(handoff.window)
        own_empty = own is not None and not handed[0].devices
        return Takeover(adopted, stale, own_empty)

    def hand_off(self, window: WindowState, devices: set[str] | frozenset[str], end_ms: int) -> None:
        """Store ``window``'s dirty ``devices`` as the shard's handoff (replacing the one before)."""
        self.store.put(window.shard_id, encode_handoff(handoff_of(window, devices, end_ms)))

    def flush(self, states: DeviceStateStore) -> dict[str, int]:
        """Write every shard's handoff to the device table, as a shard's next window would: before
        Lambda mode is switched off for a while (or for the consumer), so the table holds the last
        windows' states. Forward-only writes, the handoffs left as they are: safe while the function
        runs, and a window that adopts one later finds the table holding the same. Returns the
        devices written per shard; ``FlushError`` names the devices the table did not take."""
        written: dict[str, int] = {}
        for shard_id in self.store.shards():
            blob = self.store.get(shard_id)
            window = WindowState(shard_id) if blob is None else decode_handoff(blob).window
            pending, latest = window.pending()
            refused = states.save(pending, latest)
            if refused:
                raise FlushError(shard_id, refused)
            written[shard_id] = len(pending)
        return written


class FlushError(Exception):
    """The device table did not take some of a handoff's devices (``causes``: why, when known)."""

    def __init__(self, shard_id: str, refused: Collection[str]) -> None:
        super().__init__(f"shard {shard_id}: {len(refused)} device states were not written")
        self.shard_id = shard_id
        self.causes = causes_of(refused, Sink.DEVICE_STATE)


def _fresh(handoff: Handoff, start_ms: int, end_ms: int) -> bool:
    """Written by a window that ended at most one window's width before this one started (and not
    after this one ends: that is a stream read again from an older position)."""
    return start_ms - (end_ms - start_ms) <= handoff.end_ms <= end_ms
