"""Hands a fleet's messages on in send order, as fast as possible or at their send time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from simulator.fleet import Fleet, Sends

PACING_SLICE_MS = 100  # real time: messages due within this of each other go out together


def paced(
    fleet: Fleet, realtime: bool, stop: threading.Event | None = None
) -> Iterator[tuple[Sends, int, int]]:
    """``(sends, low, high)``: the tick's messages ``low:high`` are due now. In real time, fleet time
    ``start_ms`` is the moment iteration starts and each slice waits for the send time of its last
    message (``stop`` ends the wait and the iteration early): a device never sends a sample before it
    took it, so a latency measured from a sample's timestamp is never understated."""
    stop = stop or threading.Event()
    wall_start = time.monotonic()
    for sends in fleet.ticks():
        for low, high in slices(sends) if realtime else [(0, len(sends))]:
            if realtime:
                delay = wall_start + (sends.send_ms[high - 1] - fleet.start_ms) / 1000 - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            if stop.is_set():
                return
            yield sends, low, high


def slices(sends: Sends) -> list[tuple[int, int]]:
    """Index ranges of messages due within ``PACING_SLICE_MS`` of their range's first."""
    ranges: list[tuple[int, int]] = []
    low = 0
    send_ms = sends.send_ms
    for index in range(1, len(send_ms) + 1):
        if index == len(send_ms) or send_ms[index] - send_ms[low] >= PACING_SLICE_MS:
            ranges.append((low, index))
            low = index
    return ranges
