"""Activity context: a few steps are rest, sustained movement is activity, recovery is earned."""

from __future__ import annotations

import math

import pytest

from service.core import DEFAULT_CONFIG, AnomalyType, DeviceState, decode_state, encode_state, iso_ms
from service.core.activity import ActivityContext, ActivityModel
from service.core.state import NONE
from service.core.telemetry import parse_rfc3339_ms
from tests.unit.builders import Device

INTERVAL_S = 5
SUSTAIN_MS = DEFAULT_CONFIG.tachycardia_sustain_ms


def _moving(device: Device, seconds: int, heart_rate: int, bursts: tuple[int, ...]) -> None:
    """``seconds`` of samples at ``heart_rate``; the i-th sample takes ``bursts[i % len(bursts)]``
    steps (a pattern of incidental steps, or a cadence)."""
    payloads = []
    for i in range(seconds // INTERVAL_S):
        payloads += device.samples(INTERVAL_S, heartRate=heart_rate, steps=bursts[i % len(bursts)])
    device.feed(payloads)


def _alerts(device: Device, anomaly: AnomalyType) -> list[tuple[str, str]]:
    return [(a.startedAt, a.detectedAt) for a in device.alerts if a.type == anomaly]


# Incidental movement while sitting: steps per 5-second sample, repeating.
FIDGETS = {
    "2 steps every 30 s": (0, 0, 0, 0, 0, 2),
    "6 steps to the door every minute": (0,) * 11 + (6,),
    "a dozen steps every 2 minutes": (0,) * 23 + (12,),
    "4 steps every 15 s": (0, 0, 4),
    "a handful of 2-6 step samples": (0, 3, 0, 0, 0, 0, 6, 0, 2, 0, 0, 0, 0, 0, 5, 0, 0, 0, 4, 0),
    "shifting in the chair every sample": (1,),
}


@pytest.mark.parametrize("pattern", FIDGETS.values(), ids=FIDGETS.keys())
@pytest.mark.parametrize(
    ("anomaly", "heart_rate"), [(AnomalyType.TACHYCARDIA, 140), (AnomalyType.BRADYCARDIA, 36)]
)
def test_incidental_steps_before_and_during_an_episode_are_rest(
    pattern: tuple[int, ...], anomaly: AnomalyType, heart_rate: int
) -> None:
    device = Device()
    _moving(device, 600, 70, pattern)
    start = device.t

    _moving(device, 90, heart_rate, pattern)

    assert _alerts(device, anomaly) == [(iso_ms(start), iso_ms(start + SUSTAIN_MS))]
    assert [a.type for a in device.alerts] == [anomaly]


@pytest.mark.parametrize(
    ("run_minutes", "slow_steps", "recovery_minutes"),
    [(10, 3, 6), (10, 5, 6), (30, 4, 8), (10, 0, 5), (35, 2, 10)],
)
def test_a_run_and_its_recovery_are_no_tachycardia(
    run_minutes: int, slow_steps: int, recovery_minutes: int
) -> None:
    device = Device()
    _moving(device, 600, 68, (0,))
    _moving(device, run_minutes * 60, 170, (14, 15, 13))
    samples = recovery_minutes * 60 // INTERVAL_S
    for i in range(samples):  # heart rate falls from 170 to 100 while walking slowly
        _moving(device, INTERVAL_S, round(170 - 70 * i / samples), (slow_steps,))
    _moving(device, 600, 90, (0,))

    assert device.alerts == []


@pytest.mark.parametrize("walk_steps", [9, 10, 11])
def test_tachycardia_after_a_brisk_walk_waits_only_for_the_recovery_the_walk_earned(walk_steps: int) -> None:
    cfg = DEFAULT_CONFIG
    device = Device()
    _moving(device, 600, 68, (0,))
    _moving(device, 120, 105, (walk_steps,))  # a brisk 2-minute walk
    walk_end = device.t

    _moving(device, 300, 140, (0,))  # then sitting, at 140

    cadence = walk_steps * 60 / INTERVAL_S
    tail_ms = cfg.activity_half_life_ms * math.log2(cadence / cfg.active_steps_per_min)
    earned_ms = cfg.recovery_ratio * cadence / cfg.active_steps_per_min * (120_000 + tail_ms)
    [(started, detected)] = _alerts(device, AnomalyType.TACHYCARDIA)
    assert iso_ms(walk_end) <= started <= iso_ms(walk_end + round(tail_ms + earned_ms) + 5_000)
    assert detected == iso_ms(_ms(started) + SUSTAIN_MS)
    assert _ms(detected) < walk_end + cfg.recovery_ms  # far sooner than after a run


def _ms(iso: str) -> int:
    value = parse_rfc3339_ms(iso)
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("case", "phases", "alerts"),
    [
        ("walking raises the rate", [(120, 105, (10,))], []),
        ("a burst of steps explains a short rise", [(5, 100, (12,)), (20, 100, (0,)), (60, 62, (0,))], []),
        ("still recovering after a walk", [(300, 100, (10,)), (60, 100, (0,)), (60, 62, (0,))], []),
        ("a spike while sitting still", [(60, 102, (0,))], ["HR_SPIKE"]),
        (
            "a spike with steps in the middle",
            [(60, 102, (0,)), (5, 102, (6,)), (60, 102, (0,))],
            ["HR_SPIKE"],
        ),
        ("a spike after a burst of steps", [(5, 62, (8,)), (90, 102, (0,))], ["HR_SPIKE"]),
        (
            "steps every 20 s for 90 s do not split a spike",
            [(30, 102, (0,)), (90, 102, (0, 0, 0, 6)), (60, 102, (0,))],
            ["HR_SPIKE"],
        ),
    ],
)
def test_hr_spike_is_gated_by_movement_and_activity(
    case: str, phases: list[tuple[int, int, tuple[int, ...]]], alerts: list[str]
) -> None:
    device = Device()
    _moving(device, 1800, 62, (0,))  # a warm resting baseline
    for seconds, heart_rate, pattern in phases:
        _moving(device, seconds, heart_rate, pattern)

    assert device.types() == alerts, case


@pytest.mark.parametrize("burst_at_s", [0, 5, 10])
def test_steps_while_a_spike_is_under_way_neither_delay_nor_end_it(burst_at_s: int) -> None:
    device = Device()
    _moving(device, 1800, 62, (0,))
    start = device.t

    _moving(device, 5 + burst_at_s, 102, (0,))  # the spike starts while still
    _moving(device, 5, 102, (6,))  # a few steps
    _moving(device, 120, 102, (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8))

    sustain = DEFAULT_CONFIG.spike_sustain_ms
    assert _alerts(device, AnomalyType.HR_SPIKE) == [(iso_ms(start), iso_ms(start + sustain))]


def test_a_snapshot_mid_bout_or_mid_recovery_continues_identically() -> None:
    phases = [(600, 68, (0,)), (300, 165, (14,)), (60, 150, (4,)), (240, 135, (0, 0, 6)), (300, 140, (0,))]
    straight, split = Device(), Device()

    for seconds, heart_rate, pattern in phases:
        _moving(straight, seconds, heart_rate, pattern)
        _moving(split, seconds, heart_rate, pattern)
        split.states = {k: decode_state(encode_state(v)) for k, v in split.states.items()}

    assert split.alerts == straight.alerts
    assert [a.type for a in split.alerts] == [AnomalyType.TACHYCARDIA]
    assert split.states == straight.states


# --- the model itself -------------------------------------------------------------------------


def _sit(model: ActivityModel, state: DeviceState, seconds: int, steps: int) -> list[ActivityContext]:
    contexts = []
    for _ in range(seconds // INTERVAL_S):
        t = state.last_event_ms + INTERVAL_S * 1000
        contexts.append(model.step(state, t, INTERVAL_S * 1000, INTERVAL_S * 1000, steps))
        state.last_event_ms = t
    return contexts


@pytest.mark.parametrize(
    ("bout", "seconds", "steps", "earned_s"),
    [
        ("6 steps to the door", 5, 6, (0, 0)),
        ("a dozen steps twice", 10, 12, (0, 0)),
        ("pacing at 36 steps/min", 600, 3, (0, 0)),
        ("a 2-minute brisk walk", 120, 10, (15, 60)),
        ("a 3-minute run", 180, 14, (90, 200)),
        ("a 10-minute run", 600, 14, (300, 300)),
        ("a 15-minute walk", 900, 9, (300, 300)),
    ],
)
def test_recovery_scales_with_how_long_and_how_hard(
    bout: str, seconds: int, steps: int, earned_s: tuple[int, int]
) -> None:
    model = ActivityModel(DEFAULT_CONFIG)
    state = DeviceState(last_event_ms=0)
    _sit(model, state, 600, 0)
    _sit(model, state, seconds, steps)
    after = state.last_event_ms

    contexts = _sit(model, state, 1200, 0)

    earned = min(state.recovery_earned_ms, DEFAULT_CONFIG.recovery_ms)
    assert earned_s[0] * 1000 <= earned <= earned_s[1] * 1000, (bout, earned)
    if state.active_until_ms == NONE:
        assert ActivityContext.ACTIVE not in contexts, bout
        return
    rest_at = after + INTERVAL_S * 1000 * (1 + contexts.index(ActivityContext.STILL))
    assert state.active_until_ms + earned <= rest_at < state.active_until_ms + earned + INTERVAL_S * 1000
