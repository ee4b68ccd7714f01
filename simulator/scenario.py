"""What a simulated fleet does: rates and durations of activity, anomalies and stream faults.

Rates of segments (activity bouts, anomaly episodes, outages) are hazards per device-hour **while
the device is eligible**: resting, online, and (for anomalies) rested for ``min_rest_ms`` since its
last activity bout or episode, with the whole episode fitting before the end of the simulation. Per
sample faults (duplicate, out-of-order, malformed) are probabilities per sample.

Incidental movement: a resting wearer (also one in an anomaly episode: people with a racing heart
still shift in the chair) takes a burst of a few to a dozen steps in one sample, ``incidental_rate``
times per device-hour. Bursts are not activity bouts: they are not in the ground truth, need no
rest before or after, and never sustain a walking cadence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000


class Segment(IntEnum):
    """What a device is doing. Anomaly segments come last: ``segment >= Segment.TACHYCARDIA``."""

    REST = 0
    WALK = 1
    RUN = 2
    TACHYCARDIA = 3
    BRADYCARDIA = 4
    LOW_SPO2 = 5
    HR_SPIKE = 6
    NO_READING = 7  # a SENSOR_FAULT: heart rate 0
    STUCK_READING = 8  # a SENSOR_FAULT: the same non-zero heart rate repeated
    DROPOUT = 9  # silent: samples are lost
    RECONNECT_BURST = 10  # offline: samples are buffered and sent at once on reconnect


ANOMALY_TYPE: dict[Segment, str] = {
    Segment.TACHYCARDIA: "TACHYCARDIA",
    Segment.BRADYCARDIA: "BRADYCARDIA",
    Segment.LOW_SPO2: "LOW_SPO2",
    Segment.HR_SPIKE: "HR_SPIKE",
    Segment.NO_READING: "SENSOR_FAULT",
    Segment.STUCK_READING: "SENSOR_FAULT",
}
ANOMALY_TYPES: tuple[str, ...] = ("TACHYCARDIA", "BRADYCARDIA", "LOW_SPO2", "HR_SPIKE", "SENSOR_FAULT")
FAULT_TYPES: tuple[str, ...] = ("DROPOUT", "RECONNECT_BURST", "DUPLICATE", "OUT_OF_ORDER", "MALFORMED")


def _minutes(low: float, high: float) -> tuple[int, int]:
    return int(low * MS_PER_MINUTE), int(high * MS_PER_MINUTE)


DEFAULT_DURATIONS: dict[Segment, tuple[int, int]] = {
    Segment.WALK: _minutes(3, 15),
    Segment.RUN: _minutes(10, 35),
    Segment.TACHYCARDIA: _minutes(2, 10),
    Segment.BRADYCARDIA: _minutes(2, 10),
    Segment.LOW_SPO2: _minutes(2, 10),
    Segment.HR_SPIKE: _minutes(1, 5),
    Segment.NO_READING: _minutes(2, 5),
    Segment.STUCK_READING: _minutes(6, 10),
    Segment.DROPOUT: _minutes(2, 10),
    Segment.RECONNECT_BURST: _minutes(2, 10),
}

_SECOND = 1_000
# As short as the detector allows with a margin (the demo's, and ``simulate --short-episodes``): with
# ``Scenario.rested_at_start`` a run of a couple of minutes has episodes from its first minute. A
# stuck reading still takes 6 minutes (the detector needs 5 of one value).
SHORT_DURATIONS: dict[Segment, tuple[int, int]] = {
    Segment.WALK: (60 * _SECOND, 120 * _SECOND),
    Segment.RUN: (45 * _SECOND, 120 * _SECOND),
    Segment.TACHYCARDIA: (40 * _SECOND, 50 * _SECOND),
    Segment.BRADYCARDIA: (40 * _SECOND, 50 * _SECOND),
    Segment.LOW_SPO2: (40 * _SECOND, 50 * _SECOND),
    Segment.HR_SPIKE: (20 * _SECOND, 40 * _SECOND),
    Segment.NO_READING: (75 * _SECOND, 100 * _SECOND),
    Segment.STUCK_READING: DEFAULT_DURATIONS[Segment.STUCK_READING],
    Segment.DROPOUT: (20 * _SECOND, 40 * _SECOND),
    Segment.RECONNECT_BURST: (20 * _SECOND, 40 * _SECOND),
}

DEFAULT_ANOMALY_RATE = 0.02  # per device-hour and anomaly type: 2 % of devices an hour
DEFAULT_INCIDENTAL_RATE = 30.0  # bursts of steps per device-hour at rest: a handful every ten minutes
DEFAULT_INCIDENTAL_STEPS = (2, 12)  # steps in one burst (one sample), inclusive
MAX_INCIDENTAL_RATE = 360.0  # one burst every 10 s on average: beyond it, rest is walking


def default_rates(anomaly_rate: float = DEFAULT_ANOMALY_RATE) -> dict[Segment, float]:
    """Per device-hour. SENSOR_FAULT's rate is split between its two forms."""
    return {
        Segment.WALK: 0.8,
        Segment.RUN: 0.3,
        Segment.TACHYCARDIA: anomaly_rate,
        Segment.BRADYCARDIA: anomaly_rate,
        Segment.LOW_SPO2: anomaly_rate,
        Segment.HR_SPIKE: anomaly_rate,
        Segment.NO_READING: anomaly_rate / 2,
        Segment.STUCK_READING: anomaly_rate / 2,
        Segment.DROPOUT: 0.01,
        Segment.RECONNECT_BURST: 0.01,
    }


@dataclass(frozen=True, slots=True)
class Scenario:
    """A fleet's behaviour. ``rates`` are per device-hour (see the module docstring), ``durations``
    inclusive ``(low, high)`` ms ranges drawn uniformly, per-sample faults are probabilities.

    Guarantees the fleet keeps for every anomaly episode (so that a correct detector can find all of
    them and nothing else): the device has rested ``min_rest_ms`` before it, is online throughout,
    and no activity bout, outage or other episode overlaps it; after each run the device rests
    ``recovery_ms`` (the run's activity window in the ground truth covers it).
    """

    rates: dict[Segment, float] = field(default_factory=default_rates)
    durations: dict[Segment, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_DURATIONS))
    duplicate_prob: float = 0.001
    out_of_order_prob: float = 0.001
    malformed_prob: float = 0.0005
    min_rest_ms: int = 10 * MS_PER_MINUTE
    recovery_ms: int = 10 * MS_PER_MINUTE
    # Devices have rested ``min_rest_ms`` before the simulation starts (so a short run can have
    # episodes from its first minute); HR_SPIKE still waits until a device's baseline is warm.
    rested_at_start: bool = False
    baseline_warmup_ms: int = 3 * MS_PER_MINUTE
    incidental_rate: float = DEFAULT_INCIDENTAL_RATE  # 0: resting wearers never take a step
    incidental_steps: tuple[int, int] = DEFAULT_INCIDENTAL_STEPS
    # A recorded NN-interval series (ms) to replay as the resting rhythm (see simulator.fleet).
    nn_intervals_ms: tuple[float, ...] = ()
    # How devices send (simulator.uplink): samples buffered per message (1: each sample at once, as
    # its own single-sample message), the share of devices that go offline once for ``offline_ms``.
    samples_per_message: int = 1
    offline_share: float = 0.0
    offline_ms: int = 20 * MS_PER_MINUTE

    def __post_init__(self) -> None:
        for segment, rate in self.rates.items():
            if rate < 0:
                raise ValueError(f"rate of {segment.name} must be ≥ 0, got {rate}")
        for name in ("duplicate_prob", "out_of_order_prob", "malformed_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 0.1:
                raise ValueError(f"{name} must be within 0..0.1, got {value}")
        if not 0 <= self.incidental_rate <= MAX_INCIDENTAL_RATE:
            raise ValueError(
                f"incidental_rate must be within 0..{MAX_INCIDENTAL_RATE:g}, got {self.incidental_rate}"
            )
        low_steps, high_steps = self.incidental_steps
        if not 1 <= low_steps <= high_steps <= 30:
            raise ValueError(
                f"incidental_steps must satisfy 1 ≤ low ≤ high ≤ 30, got {self.incidental_steps}"
            )
        if self.samples_per_message < 1:
            raise ValueError(f"samples_per_message must be ≥ 1, got {self.samples_per_message}")
        if not 0 <= self.offline_share <= 1:
            raise ValueError(f"offline_share must be within 0..1, got {self.offline_share}")
        if self.offline_ms < 1:
            raise ValueError(f"offline_ms must be ≥ 1, got {self.offline_ms}")
        for segment, (low, high) in self.durations.items():
            if not 0 < low <= high:
                raise ValueError(f"duration of {segment.name} must satisfy 0 < low ≤ high")
