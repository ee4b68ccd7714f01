"""Anomaly vocabulary, detection thresholds and the alert contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

import msgspec


class AnomalyType(StrEnum):
    TACHYCARDIA = "TACHYCARDIA"
    BRADYCARDIA = "BRADYCARDIA"
    LOW_SPO2 = "LOW_SPO2"
    HR_SPIKE = "HR_SPIKE"
    SENSOR_FAULT = "SENSOR_FAULT"
    HIGH_HEART_RATE = "HIGH_HEART_RATE"


class Status(StrEnum):
    """The processed record's ``status``: the seed's two values plus each anomaly type."""

    NORMAL = "NORMAL"
    HIGH_HEART_RATE = "HIGH_HEART_RATE"
    TACHYCARDIA = "TACHYCARDIA"
    BRADYCARDIA = "BRADYCARDIA"
    LOW_SPO2 = "LOW_SPO2"
    HR_SPIKE = "HR_SPIKE"
    SENSOR_FAULT = "SENSOR_FAULT"


class Severity(StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


SEVERITY: dict[AnomalyType, Severity] = {
    AnomalyType.LOW_SPO2: Severity.CRITICAL,
    AnomalyType.BRADYCARDIA: Severity.HIGH,
    AnomalyType.TACHYCARDIA: Severity.HIGH,
    AnomalyType.HR_SPIKE: Severity.MEDIUM,
    AnomalyType.HIGH_HEART_RATE: Severity.MEDIUM,
    AnomalyType.SENSOR_FAULT: Severity.LOW,
}

# When several episodes are active at once, ``status`` names the most urgent one.
STATUS_PRIORITY: tuple[AnomalyType, ...] = (
    AnomalyType.LOW_SPO2,
    AnomalyType.BRADYCARDIA,
    AnomalyType.TACHYCARDIA,
    AnomalyType.HR_SPIKE,
    AnomalyType.SENSOR_FAULT,
)


_DAY_MS = 86_400_000
_BPM = (1, 300)
_WINDOW_MS = (1_000, _DAY_MS)  # a sustain, hold or clear window: one second to one day
# Each setting's accepted range, inclusive. Half-lives are divisors (≥ 1); ``seq_window`` sizes an
# integer bitmap that every sample with a ``seq`` shifts.
_LIMITS: dict[str, tuple[float, float]] = {
    "high_heart_rate_bpm": _BPM,
    "tachycardia_bpm": _BPM,
    "tachycardia_sustain_ms": _WINDOW_MS,
    "bradycardia_bpm": _BPM,
    "bradycardia_sustain_ms": _WINDOW_MS,
    "low_spo2_pct": (50, 100),
    "low_spo2_sustain_ms": _WINDOW_MS,
    "no_reading_sustain_ms": _WINDOW_MS,
    "flat_reading_sustain_ms": _WINDOW_MS,
    "spike_sigma": (0.5, 100.0),
    "spike_min_delta_bpm": _BPM,
    "spike_sustain_ms": _WINDOW_MS,
    "baseline_half_life_ms": (60_000, 30 * _DAY_MS),
    "baseline_warmup_samples": (1, 100_000),
    "baseline_min_sd_bpm": (0.1, 100.0),
    "rest_steps_per_min": (0.0, 1_000.0),
    "movement_hold_ms": (0, _DAY_MS),
    "active_steps_per_min": (1.0, 1_000.0),
    "activity_half_life_ms": (1_000, _DAY_MS),
    "recovery_ratio": (0.0, 100.0),
    "recovery_ms": (0, _DAY_MS),
    "clear_ms": _WINDOW_MS,
    "max_gap_ms": _WINDOW_MS,
    "seq_window": (1, 1_024),
    "max_future_skew_ms": (0, _DAY_MS),
    "backfill_horizon_ms": (0, 366 * _DAY_MS),
}


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """Thresholds and windows. Windows are in event time (the device's timestamps), milliseconds.

    An episode is raised when its condition has held for ``*_sustain_ms`` and ends once the condition
    has been clear for ``clear_ms``; a gap in samples longer than ``max_gap_ms`` restarts a pending
    condition, so a dropout never stretches a few samples into a sustained episode.

    Activity context (``service.core.activity``): a sample whose own cadence reaches
    ``rest_steps_per_min`` is a movement: it explains a heart-rate departure (no HR_SPIKE) that
    starts within ``movement_hold_ms`` after it; the wearer is *active* while the cadence,
    exponentially weighted with half-life ``activity_half_life_ms``, is at least
    ``active_steps_per_min``, and then *recovers* for ``recovery_ratio`` · (cadence /
    ``active_steps_per_min``) · the active time, at most ``recovery_ms``. TACHYCARDIA needs rest:
    neither active nor recovering.
    """

    high_heart_rate_bpm: int = 140
    alert_high_heart_rate: bool = False
    tachycardia_bpm: int = 120
    tachycardia_sustain_ms: int = 30_000
    bradycardia_bpm: int = 40
    bradycardia_sustain_ms: int = 30_000
    low_spo2_pct: int = 90
    low_spo2_sustain_ms: int = 30_000
    no_reading_sustain_ms: int = 60_000
    flat_reading_sustain_ms: int = 300_000
    spike_sigma: float = 4.0
    spike_min_delta_bpm: int = 25
    spike_sustain_ms: int = 10_000
    baseline_half_life_ms: int = 600_000
    baseline_warmup_samples: int = 24
    baseline_min_sd_bpm: float = 3.0
    rest_steps_per_min: float = 20.0
    movement_hold_ms: int = 30_000
    active_steps_per_min: float = 50.0
    activity_half_life_ms: int = 60_000
    recovery_ratio: float = 0.2
    recovery_ms: int = 300_000
    clear_ms: int = 60_000
    max_gap_ms: int = 60_000
    seq_window: int = 64
    max_future_skew_ms: int = 300_000
    backfill_horizon_ms: int = 7 * _DAY_MS

    def __post_init__(self) -> None:
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"detection setting {name}={value!r} is outside {low}..{high}")


DEFAULT_CONFIG = DetectionConfig()

_ALERT_NAMESPACE = uuid.UUID("6f1c5a52-6c8e-4d0f-9a57-2b3f1e7d9c41")


def alert_id(device_id: str, anomaly: AnomalyType, started_ms: int) -> str:
    """Deterministic: a redelivered record that raises the same episode yields the same id."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{device_id}|{anomaly.value}|{started_ms}"))


class Alert(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One alert per episode (SNS body, alert history row and ``replay`` output line)."""

    alertId: str
    deviceId: str
    type: AnomalyType
    severity: Severity
    startedAt: str
    detectedAt: str
    value: float
    message: str
    threshold: float | None = None
    baseline: float | None = None
    publishedAt: str | None = None  # processing time when it was raised (``process_batch``'s now)
    delayMs: int | None = None  # publishedAt - detectedAt: large for an episode found in a backlog

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)
