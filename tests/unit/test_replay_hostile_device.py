"""``vitalstream replay`` as a real process over one hostile device among normal ones: every bad
sample is one reject with its reason, the process stays small, and the hostile device's next
episode raises its alert (issue 21's acceptance for replay)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.core import iso_ms

ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
PEAK_RSS_LIMIT_BYTES = 1 << 30


def sample(device_id: str, t: int, seq: int, heart_rate: int = 70) -> dict[str, Any]:
    """A resting sample; the heart rate wobbles a little, as real ones do (a flat one is a fault)."""
    return {
        "deviceId": device_id,
        "timestamp": iso_ms(t),
        "heartRate": heart_rate + seq % 5,
        "steps": 0,
        "seq": seq,
    }


def fleet_file(path: Path, now_ms: int) -> dict[str, str]:
    """Two hours of two devices before ``now_ms``; ``rogue`` sends every hostile class in the middle
    and then a resting tachycardia. Returns the reason expected for each hostile line's marker."""
    start = now_ms - 2 * 3_600_000
    lines: list[dict[str, Any]] = []
    expected: dict[str, str] = {}

    def hostile(marker: str, reason: str, **fields: Any) -> None:
        lines.append({"deviceId": "rogue", "heartRate": 70, "steps": 0, "marker": marker} | fields)
        if reason:
            expected[marker] = reason

    for n in range(720):  # an hour at 5 s
        t = start + n * 5_000
        lines.append(sample("calm", t, n))
        lines.append(sample("rogue", t, n))
    t = start + 720 * 5_000
    hostile("jump-2^40", "", timestamp=iso_ms(t), seq=2**40)
    hostile("jump-int64", "", timestamp=iso_ms(t + 1_000), seq=2**63 - 1)
    hostile("year-10000", "timestamp_out_of_range", timestamp="9999-12-31T23:30:00.000-05:00", seq=1)
    hostile("year-0", "timestamp_out_of_range", timestamp="0001-01-01T00:30:00.000+01:00", seq=2)
    hostile("day-ahead", "timestamp_in_future", timestamp=iso_ms(now_ms + DAY_MS), seq=3)
    hostile("year-ahead", "timestamp_in_future", timestamp=iso_ms(now_ms + 365 * DAY_MS), seq=4)
    for n in range(1, 37):  # the counter wrapped to 0; three minutes at rest above 120 bpm
        lines.append(sample("rogue", t + n * 5_000, n, heart_rate=130))
        lines.append(sample("calm", t + n * 5_000, 720 + n))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return expected


def test_replay_survives_a_hostile_device_small_and_still_alerting(tmp_path: Path) -> None:
    source, out = tmp_path / "fleet.jsonl", tmp_path / "out"
    expected = fleet_file(source, int(time.time() * 1000))
    command = [sys.executable, "-m", "service.cli", "replay", str(source), "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    printed = process.stdout.read().decode() if process.stdout else ""
    assert os.waitstatus_to_exitcode(status) == 0, printed
    peak = usage.ru_maxrss * 1024 if sys.platform != "darwin" else usage.ru_maxrss
    assert peak < PEAK_RSS_LIMIT_BYTES, peak

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    got = {json.loads(base64.b64decode(r["data"]))["marker"]: r["reason"] for r in rejects}
    assert got == expected
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [(a["deviceId"], a["type"]) for a in alerts] == [("rogue", "TACHYCARDIA")]
