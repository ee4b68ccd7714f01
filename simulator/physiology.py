"""Physiological constants of the fleet model and the per-sample telemetry encoding.

Heart rate of a device at event time t (bpm)::

    resting + circadian(local hour) + fast + slow + hrv · noise

- ``resting`` is the device's own resting rate (52-78 bpm); ``circadian`` a ±3 bpm daily swing with
  its low at 04:00 local time (devices live in different time zones).
- ``fast`` and ``slow`` are the exercise response: while a bout drives an excess ``drive`` they rise
  towards 88 % and 12 % of it (time constants 30 s and 8 min) and afterwards recover towards zero
  (60 s and 8 min): the quick drop then the long tail of a real post-exercise recovery.
- A burst of incidental steps at rest (``simulator.scenario.Scenario.incidental_rate``) adds
  ``BURST_BPM_PER_STEP`` per step to ``fast``, which then recovers as after any exercise: standing up
  and walking to the door raises the rate a few bpm for a minute or so.
- ``noise`` is an AR(1) process (lag-1 correlation 0.8, standard deviation ≈ 2.5 bpm) scaled by the
  device's own variability ``hrv`` (0.6-1.4), so consecutive readings are correlated as real ones are.
"""

from __future__ import annotations

import math

NOISE_DECAY = 0.8
NOISE_KICK = 5.2  # uniform kick width: stationary sd = KICK / sqrt(12 (1 - DECAY²)) ≈ 2.5 bpm
FAST_SHARE, SLOW_SHARE = 0.88, 0.12
RISE_S, FALL_S, SLOW_S = 30.0, 60.0, 480.0
CIRCADIAN_BPM = 3.0
MIN_RESTING_READING = 45  # the model's floor at rest: healthy resting rates never reach brady range

RESTING_HR = (52.0, 78.0)
HRV_SCALE = (0.6, 1.4)
SPO2_BASE = (96, 99)  # a sample reads base or base - 1
SKIN_TEMP_TENTHS = (330, 352)  # °C x 10; a sample reads base or base + 0.1
BATTERY_MILLI = 100_000  # battery in thousandths of a percent
DRAIN_MILLI_PER_HOUR = (1_500, 3_500)  # 30-65 h on a charge
CHARGE_MILLI_PER_HOUR = 60_000  # charged on the wrist (battery pack): 10 → 100 % in 1.5 h
CHARGE_BELOW_MILLI = 10_000
CLOCK_SKEW_MS = 400  # fixed per device, ±
JITTER_MS = 128  # per sample, ±

TACHYCARDIA_BPM = (125.0, 160.0)
BRADYCARDIA_BPM = (32.0, 38.0)
LOW_SPO2_PCT = (81, 87)
SPIKE_JUMP_BPM = (35.0, 50.0)
SPIKE_CEILING_BPM = 116.0  # a spike stays below tachycardia (120) even with its noise
WALK_EXCESS_BPM = (15.0, 35.0)
WALK_STEPS_PER_MIN = (95.0, 120.0)
RUN_HR_BPM = (140.0, 175.0)
RUN_STEPS_PER_MIN = (155.0, 180.0)
BURST_BPM_PER_STEP = 0.5  # a dozen incidental steps: +6 bpm, recovering like any exercise


def step_factor(interval_ms: int, time_constant_s: float) -> float:
    """Fraction of the distance to its target a first-order response covers in one interval."""
    return 1.0 - math.exp(-interval_ms / 1000.0 / time_constant_s)


def circadian_table(event_ms: int) -> list[float]:
    """Circadian offset (bpm) at ``event_ms`` for each of the 24 whole-hour UTC offsets."""
    utc_hours = (event_ms / 3_600_000.0) % 24.0
    return [
        CIRCADIAN_BPM * math.sin(2.0 * math.pi * ((utc_hours + zone - 12 - 10.0) / 24.0))
        for zone in range(24)
    ]


class TimestampFormat:
    """Epoch ms → ``YYYY-MM-DDTHH:MM:SS.mmmZ``; one ``datetime`` per distinct minute."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}

    def minute_prefix(self, minute: int) -> str:
        """``YYYY-MM-DDTHH:MM:`` of epoch minute ``minute``."""
        prefix = self._minutes.get(minute)
        if prefix is None:
            from service.core.records import iso_ms  # noqa: PLC0415  (only on a new minute)

            if len(self._minutes) > 256:
                self._minutes.clear()
            prefix = self._minutes[minute] = iso_ms(minute * 60_000)[:17]
        return prefix

    def format(self, event_ms: int) -> str:
        seconds = event_ms // 1000
        minute = seconds // 60
        return f"{self.minute_prefix(minute)}{seconds - minute * 60:02d}.{event_ms % 1000:03d}Z"


def encode_sample(
    device_prefix: str,
    timestamp: str,
    heart_rate: int,
    steps: int,
    spo2: int | None,
    skin_tenths: int,
    battery_milli: int,
    seq: int,
) -> bytes:
    """One telemetry payload (``device_prefix`` is ``{"deviceId":"…","timestamp":"``). The fleet's
    hot loop inlines the same f-string; this is its general form (optional ``spo2``)."""
    spo2_field = "" if spo2 is None else f',"spo2":{spo2}'
    return (
        f'{device_prefix}{timestamp}","heartRate":{heart_rate},"steps":{steps}{spo2_field},'
        f'"skinTemp":{skin_tenths // 10}.{skin_tenths % 10},"battery":{battery_milli // 1000},"seq":{seq}}}'
    ).encode()
