"""Generate ``examples/telemetry.jsonl``: 20 wearables x 30 minutes at 5 s, deterministic (seeded).

    python examples/make_example.py [OUTPUT]

Scenario (device → what happens, in minutes from 02:00:00Z). ``ROLES`` names the devices so tests
can check the alerts replay raises against it:

- wearable-0003  tachycardia at rest: 130-150 bpm, no steps, 10:00-13:00  → TACHYCARDIA
- wearable-0007  low SpO2: 85-88 %, 16:40-18:40                           → LOW_SPO2
- wearable-0011  bradycardia: 35-39 bpm, 05:00-07:00                      → BRADYCARDIA
- wearable-0018  sensor fault: heart rate 0 (no reading), 20:50-22:50     → SENSOR_FAULT
- wearable-0014  a 10-minute run (150-165 bpm, ~180 steps/min), then recovery → no alert
- a few other devices walk for a few minutes (raised heart rate with steps) → no alert

Plus garbage lines (one per reject reason the file can show), one blank line and one exact
duplicate of a sample (same device ``seq``).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

SEED = 20261128
DEVICES = 20
TICKS = 360  # 30 minutes at 5 s
INTERVAL_MS = 5_000
START_MS = int(datetime(2026, 11, 28, 2, 0, tzinfo=UTC).timestamp() * 1000)

ROLES = {
    "tachycardia": "wearable-0003",
    "low_spo2": "wearable-0007",
    "bradycardia": "wearable-0011",
    "runner": "wearable-0014",
    "sensor_fault": "wearable-0018",
    "duplicated": "wearable-0005",
}
WALKERS = ("wearable-0002", "wearable-0009", "wearable-0016")

# tick → garbage line emitted after that tick's samples (comment: the reject reason it must get)
GARBAGE = {
    30: "not json at all",  # invalid_json
    75: '{"deviceId":"wearable-0004","timestamp":"2026-11-28T02:06:20.000Z","heartRate":7',  # invalid_json
    110: '{"deviceId":"wearable-0006","timestamp":"2026-11-28T02:09:10.000Z","heartRate":400,"steps":0}',
    150: '{"timestamp":"2026-11-28T02:12:30.000Z","heartRate":71,"steps":0}',  # missing_field
    190: '{"deviceId":"wearable-0008","timestamp":"2026-11-28 02:15:50","heartRate":66,"steps":0}',
    230: "[72, 0, 98]",  # not_an_object
    270: '{"deviceId":"wearable 0010!","timestamp":"2026-11-28T02:22:30.000Z","heartRate":70,"steps":0}',
    320: '{"deviceId":"wearable-0012","timestamp":"2026-11-28T02:26:40.000Z","heartRate":"72","steps":0}',
}
BLANK_AFTER_TICK = 200
DUPLICATE_TICK = 90


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


class Wearable:
    """One simulated device: a resting heart rate, a clock offset and a scripted day."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.device_id = f"wearable-{index:04d}"
        self.rng = rng
        self.offset_ms = rng.randrange(INTERVAL_MS)
        self.resting = rng.randint(58, 78)
        self.spo2 = rng.randint(96, 99)
        self.skin_temp = rng.uniform(33.5, 35.5)
        self.battery = rng.randint(55, 100)
        self.seq = rng.randint(1_000, 50_000)
        self.walk_start = rng.randint(40, 280) if self.device_id in WALKERS else -1
        self.heart_rate = float(self.resting)

    def sample(self, tick: int) -> dict[str, object]:
        rng = self.rng
        heart_rate, steps, spo2 = self._vitals(tick)
        self.seq += 1
        if tick % 36 == 35:
            self.battery = max(self.battery - 1, 1)
        self.skin_temp += rng.gauss(0, 0.02)
        body: dict[str, object] = {
            "deviceId": self.device_id,
            "timestamp": iso(START_MS + tick * INTERVAL_MS + self.offset_ms + rng.randint(-40, 40)),
            "heartRate": heart_rate,
            "steps": steps,
        }
        if spo2 is not None:
            body["spo2"] = spo2
        body["skinTemp"] = round(self.skin_temp, 1)
        body["battery"] = self.battery
        body["seq"] = self.seq
        return body

    def _vitals(self, tick: int) -> tuple[int, int, int | None]:
        """(heart rate, steps in the last 5 s, spo2 or None) for this tick of the script."""
        rng = self.rng
        spo2: int | None = min(100, self.spo2 + rng.choice((-1, 0, 0, 1)))
        target, steps = float(self.resting), 0
        role = self.device_id
        if role == ROLES["tachycardia"] and 120 <= tick < 156:
            return rng.randint(130, 150), 0, spo2
        if role == ROLES["bradycardia"] and 60 <= tick < 84:
            return rng.randint(35, 39), 0, spo2
        if role == ROLES["low_spo2"] and 200 <= tick < 224:
            spo2 = rng.randint(85, 88)
        if role == ROLES["sensor_fault"] and 250 <= tick < 274:
            return 0, 0, None
        if role == ROLES["runner"] and 100 <= tick < 220:
            target, steps = min(150.0 + (tick - 100) * 0.5, 165.0), rng.randint(14, 16)
        if 0 <= self.walk_start <= tick < self.walk_start + 36:
            target, steps = self.resting + 18.0, rng.randint(8, 12)
        # the heart moves towards its target over ~30 s, with beat-to-beat noise
        self.heart_rate += (target - self.heart_rate) * 0.15
        return max(1, round(self.heart_rate + rng.gauss(0, 2))), steps, spo2


def lines() -> Iterator[str]:
    rng = random.Random(SEED)
    fleet = [Wearable(i, rng) for i in range(1, DEVICES + 1)]
    for tick in range(TICKS):
        for device in fleet:
            line = json.dumps(device.sample(tick), separators=(",", ":"))
            yield line
            if tick == DUPLICATE_TICK and device.device_id == ROLES["duplicated"]:
                yield line
        if tick in GARBAGE:
            yield GARBAGE[tick]
        if tick == BLANK_AFTER_TICK:
            yield ""


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path(__file__).with_name("telemetry.jsonl")
    with target.open("w", encoding="utf-8", newline="\n") as out:
        for line in lines():
            out.write(line + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
