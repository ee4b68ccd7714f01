"""The latest-state coalescer: at most one write per device per interval, at once on a change of
status or anomalies, only for devices a committed snapshot holds, first writes spread over an interval,
and the newest state always wins."""

from __future__ import annotations

import msgspec

from service.core import AnomalyType, DeviceState, ProcessedRecord, Status
from service.core.latest_state import LatestStateCoalescer
from tests.unit.builders import T0, records, run, telemetry

INTERVAL = 60_000


def latest(status: Status = Status.NORMAL, anomalies: tuple[AnomalyType, ...] = ()) -> ProcessedRecord:
    (processed,) = run(records([telemetry()])).processed
    return msgspec.structs.replace(processed, status=status, anomalies=anomalies)


def test_nothing_is_written_for_a_device_no_committed_snapshot_holds() -> None:
    coalescer = LatestStateCoalescer(INTERVAL)
    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": latest()})

    assert coalescer.due(T0) == {}
    assert coalescer.due(T0, flush=True) == {}
    coalescer.cover(["dev-1"])
    assert list(coalescer.due(T0, flush=True)) == ["dev-1"]
    assert list(coalescer.due(T0 + INTERVAL)) == ["dev-1"]  # at its phase, within one interval


def test_one_write_per_interval_and_at_once_when_the_anomalies_change() -> None:
    coalescer = LatestStateCoalescer(INTERVAL)
    coalescer.cover(["dev-1"])
    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": latest()})
    coalescer.written(coalescer.due(T0, flush=True), T0)

    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": latest()})
    assert coalescer.due(T0 + 30_000) == {}  # same look, inside the interval
    assert list(coalescer.due(T0 + INTERVAL)) == ["dev-1"]

    tachy = latest(Status.TACHYCARDIA, (AnomalyType.TACHYCARDIA,))
    coalescer.observe({"dev-1": DeviceState()}, {"dev-1": tachy})
    assert list(coalescer.due(T0 + 1)) == ["dev-1"]  # a change: at once


def test_the_newest_state_is_written_and_a_write_of_an_older_one_keeps_the_newer_pending() -> None:
    coalescer = LatestStateCoalescer(INTERVAL)
    coalescer.cover(["dev-1"])
    older, newer = DeviceState(last_sequence="1"), DeviceState(last_sequence="2")
    coalescer.observe({"dev-1": older}, {"dev-1": latest()})
    writes = coalescer.due(T0, flush=True)
    coalescer.observe({"dev-1": newer}, {})  # arrives while the older write is in flight

    coalescer.written(writes, T0)

    assert coalescer.pending == 1
    (state, record) = coalescer.due(T0, flush=True)["dev-1"]
    assert state is newer
    assert record is not None  # the last record seen stays the latest-state values


def test_a_refused_write_stays_pending() -> None:
    coalescer = LatestStateCoalescer(INTERVAL)
    coalescer.cover(["dev-1", "dev-2"])
    coalescer.observe({"dev-1": DeviceState(), "dev-2": DeviceState()}, {})
    writes = coalescer.due(T0, flush=True)

    coalescer.written({"dev-2": writes["dev-2"]}, T0)  # dev-1's write was refused

    assert coalescer.pending == 1
    assert list(coalescer.due(T0, flush=True)) == ["dev-1"]


def test_devices_that_become_writable_together_are_first_written_spread_over_one_interval() -> None:
    coalescer = LatestStateCoalescer(INTERVAL)
    devices = [f"dev-{i:04d}" for i in range(1_000)]
    coalescer.cover(devices)  # e.g. a restored snapshot: every device at once
    coalescer.observe(dict.fromkeys(devices, DeviceState()), {d: latest() for d in devices})
    coalescer.observe({"dev-sick": DeviceState()}, {"dev-sick": latest(Status.BRADYCARDIA)})
    coalescer.cover(["dev-sick"])

    per_slice = []
    for end in range(T0, T0 + INTERVAL + 1, INTERVAL // 10):  # ten 6-second slices, and T0 itself
        writes = coalescer.due(end)
        coalescer.written(writes, end)
        per_slice.append(len(writes) - ("dev-sick" in writes))
        if end == T0:
            assert "dev-sick" in writes  # not quiet: written at once

    assert sum(per_slice) == len(devices)  # every one within one interval
    assert max(per_slice) <= 2 * len(devices) // 10  # no burst: about a tenth in each slice
