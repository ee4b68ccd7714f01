"""A recorded NN-interval series as the fleet's resting rhythm: reading it, windowing it, replaying it."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from simulator.fleet import Fleet
from simulator.scenario import Scenario
from simulator.variability import VariabilityFormatError, load_nn_intervals, rhythm

START_MS = 1_795_824_000_000


def _npy(descr: str, fmt: str, values: list[float], shape: str | None = None) -> bytes:
    """A NumPy .npy (format 1.0) file, written the way numpy.save writes one."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape or f'({len(values)},)'}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    body = struct.pack(f"<{len(values)}{fmt}", *values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("int64.npy", _npy("<i8", "q", [800, 812, 790])),
        ("float64.npy", _npy("<f8", "d", [800.0, 812.0, 790.0])),
        ("int32.npy", _npy("<i4", "i", [800, 812, 790])),
        ("lines.txt", b"800\n812\n790\n"),
    ],
)
def test_nn_intervals_are_read_from_npy_or_text(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    assert load_nn_intervals(path) == (800.0, 812.0, 790.0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a number\n", "one number per line"),
        (_npy("<u2", "H", [800, 812]), "1-D array"),
        (_npy("<i8", "q", [800, 812, 790, 801], shape="(2, 2)"), "1-D array"),
        (_npy("<i8", "q", [800, 812])[:-3], "does not match"),
        (b"800\n90000\n", "200-3000 ms"),
        (b"800\n", "at least 2"),
    ],
)
def test_a_file_that_is_not_a_series_is_refused_with_a_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "nn"
    path.write_bytes(content)

    with pytest.raises(VariabilityFormatError, match=reason):
        load_nn_intervals(path)


@pytest.mark.parametrize(
    ("nn_ms", "ratios"),
    [
        ([1000.0] * 20, [1.0] * 4),  # 20 s at 60 bpm: four 5-s windows at the mean rate
        ([1000.0] * 10 + [500.0] * 20, [2 / 3, 2 / 3, 4 / 3, 4 / 3]),  # 60 then 120 bpm: 90 on average
    ],
)
def test_rhythm_is_the_rate_of_each_interval_over_the_mean_rate(
    nn_ms: list[float], ratios: list[float]
) -> None:
    assert rhythm(nn_ms, 5_000) == pytest.approx(ratios)


def test_a_fleet_replays_the_rhythm_and_keeps_its_events(tmp_path: Path) -> None:
    slow_then_fast = (1000.0,) * 300 + (500.0,) * 600  # 5 min at 60 bpm, then 5 min at 120 bpm
    quiet = Scenario(incidental_rate=0.0)
    plain = Fleet(20, 3, START_MS, START_MS + 3_600_000, scenario=quiet)
    real = Fleet(20, 3, START_MS, START_MS + 3_600_000, scenario=Scenario(nn_intervals_ms=slow_then_fast))

    plain_sends = [sends for sends in plain.ticks()]
    real_sends = [sends for sends in real.ticks()]

    assert real.drain_truth() == plain.drain_truth()
    assert [s.event_ms for s in real_sends] == [s.event_ms for s in plain_sends]
    rates: dict[bool, list[float]] = {True: [], False: []}  # by "in the fast half of the recording"
    for k, sends in enumerate(real_sends[:24]):  # two minutes: nobody has started a walk or episode yet
        for device, payload in zip(sends.device_ids, sends.payloads, strict=True):
            body = json.loads(payload)
            i = int(device.rsplit("-", 1)[1])
            window = (k + real.rhythm_start[i]) % len(real.rhythm)
            rates[window >= 60].append(body["heartRate"] / real.resting[i])
    slow, fast = (sum(v) / len(v) for v in (rates[False], rates[True]))
    assert fast / slow == pytest.approx(2.0, rel=0.1)
