"""The status-change rule, once: the latest-state coalescer and the window state write a device's item
at once exactly when the rule says its look (status, open anomalies) changed."""

from __future__ import annotations

import msgspec
import pytest

from service.core import AnomalyType, DeviceState, ProcessedRecord, Status
from service.core.latest_state import LatestStateCoalescer
from service.core.status_change import QUIET, Look, write_at_once
from service.core.window_state import LatestView, WindowState
from tests.unit.builders import SHARD, T0, records, run, telemetry

TACHY: Look = (Status.TACHYCARDIA, (AnomalyType.TACHYCARDIA,))
HIGH: Look = (Status.HIGH_HEART_RATE, ())
HIGH_TACHY: Look = (Status.HIGH_HEART_RATE, (AnomalyType.TACHYCARDIA,))

PAIRS = [
    (QUIET, QUIET, False),
    (QUIET, TACHY, True),
    (TACHY, QUIET, True),
    (TACHY, TACHY, False),
    (HIGH, HIGH_TACHY, True),  # the status stays, the open anomalies change
]


@pytest.mark.parametrize(
    ("before", "after", "at_once"),
    [*PAIRS, (None, TACHY, False), (TACHY, None, False), (None, None, False)],
)
def test_the_rule(before: Look | None, after: Look | None, at_once: bool) -> None:
    assert write_at_once(before, after) is at_once


def shows(look: Look) -> ProcessedRecord:
    (processed,) = run(records([telemetry()])).processed
    return msgspec.structs.replace(processed, status=look[0], anomalies=look[1])


@pytest.mark.parametrize(("before", "after", "at_once"), PAIRS)
def test_the_coalescer_writes_at_once_as_the_rule_says(before: Look, after: Look, at_once: bool) -> None:
    coalescer = LatestStateCoalescer(60_000)
    coalescer.cover(["dev-1"])
    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": shows(before)})
    coalescer.written(coalescer.due(T0, flush=True), T0)

    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": shows(after)})

    assert ("dev-1" in coalescer.due(T0 + 1)) is at_once


@pytest.mark.parametrize(("before", "after", "at_once"), PAIRS)
def test_the_window_writes_at_once_as_the_rule_says(before: Look, after: Look, at_once: bool) -> None:
    held = WindowState(SHARD, {"dev-1": DeviceState()}, {"dev-1": LatestView.of(shows(before))})

    moved = held.advanced({}, {"dev-1": DeviceState()}, {"dev-1": shows(after)}, failed=())

    assert moved.changed_looks(held) == ({"dev-1"} if at_once else set())
