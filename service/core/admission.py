"""Which samples a device's state admits: redeliveries, device duplicates and late samples.

Two layers, both deterministic:

- Stream position: a record at or below the device's last applied (sequence, sub-sequence) in the
  same shard is a Kinesis redelivery; it has already had its effects and is skipped. Sequence
  numbers are compared as integers.
- Device order: with ``seq``, a sliding window of the last ``seq_window`` counters tells a repeat
  (DUPLICATE) from a late arrival (LATE) — an unseen counter below the newest on a clock newer than
  every sample's is NEW (one glitched counter never makes the next ones late); a counter far below
  the window on a newer timestamp is a device restart, and a newer counter on a clock more than
  ``clock_step_ms`` older than the last sample is a clock that stepped back: the device's detectors
  restart on the new clock instead of treating everything until the clock catches up as LATE.
  Without ``seq``, the same timestamp as the last sample is a DUPLICATE and an earlier one is LATE.
  A LATE sample is archived (flagged ``outOfOrder``) but does not move the detectors, whose windows
  run forward in event time only.

Every step is O(1) in time and in the state's size, whatever the counters: a jump ahead by more than
the window starts an empty window (nothing below the new counter is known), and a counter far below
the window (a reset or a wrap) is never turned into a shift.
"""

from __future__ import annotations

from enum import Enum

from service.core.state import NONE, DeviceState


class Admission(Enum):
    NEW = "new"
    LATE = "late"
    DUPLICATE = "duplicate"


def is_redelivery(state: DeviceState, shard_id: str, position: tuple[int, int]) -> bool:
    if state.last_shard != shard_id or not state.last_sequence:
        return False
    return position <= (int(state.last_sequence), state.last_sub_sequence)


def admit(state: DeviceState, device_seq: int | None, t: int, window: int, clock_step_ms: int) -> Admission:
    """Classify one sample and record its device ``seq`` in the state's window."""
    if device_seq is None or state.device_seq == NONE:
        if device_seq is not None:
            state.device_seq = device_seq
        return _by_time(state, t)
    ahead = device_seq - state.device_seq
    if ahead > 0:
        if ahead <= window:
            state.seq_window = ((state.seq_window << ahead) | (1 << (ahead - 1))) & ((1 << window) - 1)
        else:  # the previous counter falls outside the window: nothing below the new one is known
            state.seq_window = 0
        state.device_seq = device_seq
        if state.last_event_ms == NONE or t > state.last_event_ms:
            return Admission.NEW
        if state.last_event_ms - t > clock_step_ms:  # a newer counter on a much older clock
            state.restart_clock()
            return Admission.NEW
        return Admission.LATE
    if ahead == 0:
        return Admission.DUPLICATE
    if -ahead <= window:
        bit = 1 << (-ahead - 1)
        if state.seq_window & bit:
            return Admission.DUPLICATE
        state.seq_window |= bit
        # An unseen counter below the newest one: late, unless its clock is newer than every sample's
        # (the newest counter was a glitch); the clock is trusted, as the time bounds checked it.
        return Admission.NEW if t > state.last_event_ms else Admission.LATE
    if t > state.last_event_ms:  # far below the window, on a newer clock: the device restarted
        state.device_seq, state.seq_window = device_seq, 0
        return Admission.NEW
    return Admission.DUPLICATE


def _by_time(state: DeviceState, t: int) -> Admission:
    if state.last_event_ms == NONE or t > state.last_event_ms:
        return Admission.NEW
    if t == state.last_event_ms:
        return Admission.DUPLICATE
    return Admission.LATE
