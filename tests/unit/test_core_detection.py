"""Anomaly episodes in event time: raise after the sustain window, once per episode, clear, re-raise."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from service.core import DEFAULT_CONFIG, AnomalyType, Severity, alert_id, iso_ms
from tests.unit.builders import T0, Device


@pytest.mark.parametrize(
    ("anomaly", "values", "sustain_s"),
    [
        (AnomalyType.TACHYCARDIA, {"heartRate": 130, "steps": 0}, 30),
        (AnomalyType.BRADYCARDIA, {"heartRate": 38, "steps": 0}, 30),
        (AnomalyType.LOW_SPO2, {"heartRate": 70, "steps": 0, "spo2": 85}, 30),
        (AnomalyType.SENSOR_FAULT, {"heartRate": 0, "steps": 0}, 60),
    ],
)
def test_condition_raises_exactly_at_the_sustain_window(
    anomaly: AnomalyType, values: dict[str, int], sustain_s: int
) -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=0)
    start = device.t

    device.emit(sustain_s, **values)  # samples at start .. start + sustain - 5 s: not yet sustained
    assert device.alerts == []
    device.emit(5, **values)  # the sample at start + sustain raises

    [alert] = device.alerts
    assert alert.type == anomaly
    assert alert.startedAt == iso_ms(start)
    assert alert.detectedAt == iso_ms(start + sustain_s * 1000)
    assert alert.alertId == alert_id("dev-1", anomaly, start)


@pytest.mark.parametrize(
    ("anomaly", "values"),
    [
        (AnomalyType.TACHYCARDIA, {"heartRate": 130, "steps": 0}),
        (AnomalyType.BRADYCARDIA, {"heartRate": 35, "steps": 0}),
        (AnomalyType.LOW_SPO2, {"heartRate": 70, "steps": 0, "spo2": 82}),
        (AnomalyType.SENSOR_FAULT, {"heartRate": 0, "steps": 0}),
    ],
)
def test_one_alert_per_episode_then_clear_then_a_new_episode(
    anomaly: AnomalyType, values: dict[str, int]
) -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=0)

    device.emit(600, **values)  # ten minutes of the condition: one episode, one alert
    assert device.types() == [anomaly.value]
    device.emit(30, heartRate=72, steps=0)  # clear for less than the clear window: same episode
    device.emit(120, **values)
    assert device.types() == [anomaly.value]
    device.emit(120, heartRate=71, steps=0)  # clear for two minutes: the episode ends
    device.emit(120, **values)

    assert device.types() == [anomaly.value, anomaly.value]
    assert len({a.alertId for a in device.alerts}) == 2


def test_processed_records_carry_the_open_episode() -> None:
    device = Device()
    device.emit(60, heartRate=70, steps=0)
    result = device.emit(60, heartRate=38, steps=0)

    statuses = [p.status.value for p in result.processed]
    assert statuses[:6] == ["NORMAL"] * 6
    assert statuses[6:] == ["BRADYCARDIA"] * 6
    assert json.loads(result.processed[-1].to_json())["anomalies"] == ["BRADYCARDIA"]


def test_condition_broken_before_the_window_raises_nothing() -> None:
    device = Device()
    for _ in range(10):
        device.emit(25, heartRate=130, steps=0)
        device.emit(5, heartRate=95, steps=0)

    assert AnomalyType.TACHYCARDIA.value not in device.types()


def test_a_dropout_does_not_stretch_two_samples_into_a_sustained_episode() -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=0)
    device.emit(5, heartRate=130, steps=0)
    device.t += 10 * 60_000  # ten minutes of silence
    device.emit(5, heartRate=130, steps=0)

    assert device.alerts == []


def test_running_with_a_high_heart_rate_is_not_tachycardia() -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=0)
    device.emit(1200, heartRate=165, steps=14)  # 20 minutes of running, ~170 steps/min
    device.emit(120, heartRate=128, steps=0)  # recovery: still fast, no steps, within recovery window

    assert device.alerts == []


def test_tachycardia_at_rest_after_recovery_is_detected() -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=14)
    device.emit(600, heartRate=72, steps=0)  # well rested
    device.emit(60, heartRate=135, steps=0)

    assert device.types() == ["TACHYCARDIA"]
    assert device.alerts[0].severity == Severity.HIGH
    assert device.alerts[0].threshold == DEFAULT_CONFIG.tachycardia_bpm


def test_a_few_steps_of_fidgeting_still_count_as_rest() -> None:
    device = Device()
    device.emit(600, heartRate=72, steps=0)
    device.emit(60, heartRate=132, steps=1)

    assert device.types() == ["TACHYCARDIA"]


def _resting(device: Device, minutes: int, rng: random.Random, mean: int = 62) -> None:
    for _ in range(minutes * 12):
        device.emit(5, heartRate=mean + rng.randint(-4, 4), steps=0)


def test_hr_spike_departs_from_the_device_baseline() -> None:
    rng = random.Random(7)
    device = Device()
    _resting(device, 30, rng)
    device.emit(20, heartRate=102, steps=0)  # +40 bpm at rest, below the tachycardia threshold

    [alert] = device.alerts
    assert alert.type == AnomalyType.HR_SPIKE
    assert alert.baseline is not None
    assert 58 <= alert.baseline <= 66
    assert alert.threshold is None


def test_hr_spike_needs_a_warm_baseline() -> None:
    device = Device()
    device.emit(20, heartRate=62, steps=0)  # four samples: no baseline yet
    device.emit(20, heartRate=102, steps=0)

    assert device.alerts == []


def test_normal_resting_variability_raises_no_spike() -> None:
    rng = random.Random(11)
    device = Device()
    for _ in range(6 * 60 * 12):  # six hours of resting heart rate with a slow drift
        drift = 8 if (device.t - T0) // 3_600_000 % 2 else 0
        device.emit(5, heartRate=60 + drift + rng.randint(-6, 6), steps=0)

    assert device.alerts == []


def test_activity_explains_a_heart_rate_rise() -> None:
    rng = random.Random(3)
    device = Device()
    _resting(device, 30, rng)
    device.emit(120, heartRate=105, steps=10)  # brisk walk

    assert device.alerts == []


def test_flat_reading_for_minutes_is_a_sensor_fault() -> None:
    device = Device()
    device.emit(120, heartRate=70, steps=0)
    start = device.t
    device.emit(300, jitter=False, heartRate=77, steps=0)
    assert device.alerts == []
    device.emit(5, jitter=False, heartRate=77, steps=0)

    [alert] = device.alerts
    assert (alert.type, alert.startedAt) == (AnomalyType.SENSOR_FAULT, iso_ms(start))
    assert "stuck at 77" in alert.message


def test_high_heart_rate_alerts_only_when_enabled() -> None:
    quiet = Device()
    quiet.emit(60, heartRate=150, steps=14)
    loud = Device(config=replace(DEFAULT_CONFIG, alert_high_heart_rate=True))
    loud.emit(60, heartRate=150, steps=14)

    assert quiet.alerts == []
    assert loud.types() == ["HIGH_HEART_RATE"]


def test_missing_spo2_neither_raises_nor_clears_low_spo2() -> None:
    device = Device()
    device.emit(60, heartRate=70, steps=0, spo2=85)
    device.emit(300, heartRate=70, steps=0, spo2=None)
    device.emit(5, heartRate=70, steps=0, spo2=85)

    assert device.types() == ["LOW_SPO2"]


def test_alert_contract_fields() -> None:
    device = Device()
    device.emit(300, heartRate=70, steps=0)
    device.emit(35, heartRate=70, steps=0, spo2=86)

    body = json.loads(device.alerts[0].to_json())
    assert set(body) == {
        "alertId",
        "deviceId",
        "type",
        "severity",
        "startedAt",
        "detectedAt",
        "value",
        "threshold",
        "message",
        "publishedAt",
        "delayMs",
    }
    assert (body["type"], body["severity"], body["value"], body["threshold"]) == (
        "LOW_SPO2",
        "CRITICAL",
        86,
        90,
    )
