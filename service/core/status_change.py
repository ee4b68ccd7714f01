"""The status-change rule: a device's item is written at once when its status or open anomalies change.

Two places hold device-table writes back — the consumer's latest-state coalescer
(``core.latest_state``, at most one write per device per interval) and a Lambda tumbling window
(``core.window_state``, one write per device per window). Both let a write wait, except when the
device's look (its status and open anomalies: what an operator reads off the item) has changed;
then the item is written at once. Each holder says what the new look is compared with:

- the coalescer: the look the table last got from this owner (``QUIET`` for a device it has not
  written yet);
- the window: the device's look in the window before the batch (none for a device the window reads
  this very batch: it waits for the window's end, so that a retried batch yields the same state).
"""

from __future__ import annotations

from typing import Protocol

from service.core.anomalies import AnomalyType, Status

Look = tuple[Status, tuple[AnomalyType, ...]]
QUIET: Look = (Status.NORMAL, ())  # what a device with no written look is taken to show


class Shown(Protocol):
    """Anything that carries a device's look: a processed record, a window's latest view."""

    @property
    def status(self) -> Status: ...

    @property
    def anomalies(self) -> tuple[AnomalyType, ...]: ...


def look_of(shown: Shown | None) -> Look | None:
    return None if shown is None else (shown.status, shown.anomalies)


def write_at_once(before: Look | None, after: Look | None) -> bool:
    """The rule: true when both looks are known and differ (the status or open anomalies changed)."""
    return before is not None and after is not None and before != after
