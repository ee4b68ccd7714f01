"""A hostile or broken device (counter jumps, clocks that jump, calendar edges) costs one reject per
bad sample: the core never raises, a device's state stays small, and the device's next episode is
still detected. The first tests pin the defects found on 2026-12-07 (issue 21); the state machine
at the end mixes every class at random."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.core import (
    DEFAULT_CONFIG,
    Alert,
    AnomalyType,
    DetectionConfig,
    Detector,
    DeviceState,
    KinesisRecord,
    RejectReason,
    decode_records,
    encode_state,
    iso_ms,
    process_batch,
)
from service.core.telemetry import INT64_MAX
from tests.unit.builders import SEQ0, SHARD, T0, Device, telemetry

DAY_MS = 86_400_000
STATE_BYTES_MAX = 512  # a device's encoded state, whatever it was sent


def arriving_at(arrival_ms: int, payloads: list[dict[str, Any]], first_seq: int) -> list[KinesisRecord]:
    """Records that reached the stream at ``arrival_ms``, whatever their samples' timestamps say."""
    return [
        KinesisRecord(json.dumps(p).encode(), SHARD, str(first_seq + i), arrival_ms)
        for i, p in enumerate(payloads)
    ]


def hostile(device: Device, payloads: list[dict[str, Any]]) -> list[str]:
    """Feed ``payloads`` as arriving now on ``device``'s clock; the reasons of the rejects."""
    batch = arriving_at(device.t, payloads, device.kinesis_seq)
    device.kinesis_seq += len(payloads)
    result = process_batch(decode_records(batch), device.states, Detector(device.config), device.t)
    device.states.update(result.states)
    device.alerts.extend(result.alerts)
    return [r.reason.value for r in result.rejects]


def resting_tachycardia(device: Device) -> list[Alert]:
    before = len(device.alerts)
    device.emit(180, heartRate=130, steps=0)
    return [a for a in device.alerts[before:] if a.type is AnomalyType.TACHYCARDIA]


# --- the defects, one test each ------------------------------------------------------------------


def test_a_seq_jump_of_2_to_the_40_costs_nothing_and_the_next_episode_alerts() -> None:
    device = Device()
    device.emit(60, heartRate=70, steps=0)
    assert hostile(device, [telemetry(timestamp=iso_ms(device.t), seq=2**40)]) == []
    assert len(encode_state(device.states["dev-1"])) < STATE_BYTES_MAX
    device.t += 5_000
    device.seq = 2**40 + 1
    assert len(resting_tachycardia(device)) == 1


@pytest.mark.parametrize("jump", [2**30, 2**40, INT64_MAX])
def test_any_jump_ahead_then_a_reset_keeps_the_window_within_its_bits(jump: int) -> None:
    device = Device()
    device.emit(20, heartRate=70, steps=0)
    hostile(device, [telemetry(timestamp=iso_ms(device.t), seq=jump)])
    device.t += 5_000
    device.seq = 0  # the counter wrapped: far below the window, on a newer clock
    device.emit(20, heartRate=70, steps=0)
    state = device.states["dev-1"]
    assert state.seq_window < 1 << DEFAULT_CONFIG.seq_window
    assert state.device_seq == device.seq - 1


def test_one_counter_glitched_ahead_within_the_window_makes_no_later_sample_late() -> None:
    device = Device()
    device.emit(30, heartRate=70, steps=0)
    assert hostile(device, [telemetry(timestamp=iso_ms(device.t), seq=device.seq + 41)]) == []
    device.t += 5_000
    result = device.emit(60, heartRate=70, steps=0)  # the counter goes on from where it was
    assert not any(r.out_of_order for r in result.processed)
    assert len(resting_tachycardia(device)) == 1


@pytest.mark.parametrize(
    "timestamp",
    [
        "9999-12-31T23:30:00.000-05:00",  # year 10000 in UTC
        "0001-01-01T00:30:00.000+01:00",  # year 0 in UTC
        "1969-12-31T23:59:59.999Z",  # before the epoch: never an event time here
        "0001-01-01T00:00:00Z",
    ],
)
def test_a_timestamp_past_the_calendar_edge_in_utc_is_out_of_range(timestamp: str) -> None:
    device = Device()
    device.emit(20, heartRate=70, steps=0)
    assert hostile(device, [telemetry(timestamp=timestamp, seq=device.seq)]) == ["timestamp_out_of_range"]
    device.seq += 1
    assert len(resting_tachycardia(device)) == 1


def test_the_last_representable_moments_are_accepted_and_format_back() -> None:
    edge = [
        telemetry(deviceId="late", timestamp="9999-12-31T23:59:59.999Z"),
        telemetry(deviceId="late-offset", timestamp="9999-12-31T18:59:59.999-05:00"),
        telemetry(deviceId="early", timestamp="1970-01-01T01:00:00.000+01:00"),
    ]
    result = process_batch(decode_records(arriving_at(0, edge, SEQ0)), {}, Detector(DEFAULT_CONFIG), T0)
    assert result.rejects == []
    assert [iso_ms(r.event_ms) for r in result.processed] == [
        "9999-12-31T23:59:59.999Z",
        "9999-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00.000Z",
    ]


@pytest.mark.parametrize("ahead_ms", [DAY_MS, 365 * DAY_MS])
def test_one_sample_from_the_future_is_rejected_and_silences_nothing(ahead_ms: int) -> None:
    device = Device()
    device.emit(60, heartRate=70, steps=0)
    future = telemetry(timestamp=iso_ms(device.t + ahead_ms), seq=device.seq)
    assert hostile(device, [future]) == ["timestamp_in_future"]
    device.seq += 1
    assert len(resting_tachycardia(device)) == 1


def test_a_sample_within_the_skew_is_accepted_and_one_beyond_it_is_not() -> None:
    device = Device()
    skew = DEFAULT_CONFIG.max_future_skew_ms
    accepted = telemetry(timestamp=iso_ms(device.t + skew), seq=1)
    refused = telemetry(timestamp=iso_ms(device.t + skew + 1), seq=2)
    assert hostile(device, [accepted, refused]) == ["timestamp_in_future"]


def test_a_sample_older_than_the_backfill_horizon_is_too_old_and_a_backlog_within_it_is_processed() -> None:
    device = Device(t=T0 + 30 * DAY_MS)
    device.emit(60, heartRate=70, steps=0)
    horizon = DEFAULT_CONFIG.backfill_horizon_ms
    old = telemetry(timestamp=iso_ms(device.t - horizon - 1), seq=device.seq)
    backlog = telemetry(timestamp=iso_ms(device.t - horizon + 60_000), seq=device.seq + 1)
    assert hostile(device, [old, backlog]) == ["timestamp_too_old"]
    device.seq += 2
    assert len(resting_tachycardia(device)) == 1


def test_a_clock_that_steps_back_an_hour_restarts_the_detectors_instead_of_an_hour_of_late_samples() -> None:
    device = Device()
    device.emit(120, heartRate=70, steps=0)
    device.t -= 3_600_000  # the counter goes on, the clock is reset an hour back
    result = device.emit(60, heartRate=70, steps=0)
    assert not any(r.out_of_order for r in result.processed)
    assert len(resting_tachycardia(device)) == 1


def test_a_backlog_with_older_counters_is_still_late_not_a_clock_step() -> None:
    device = Device()
    backlog = device.samples(120, heartRate=70, steps=0)
    device.feed(device.samples(60, heartRate=70, steps=0))
    result = device.feed(backlog)
    assert all(r.out_of_order for r in result.processed)


def test_a_record_without_an_arrival_time_is_not_checked_against_one() -> None:
    far = [telemetry(timestamp="2099-01-01T00:00:00Z")]
    result = process_batch(decode_records(arriving_at(0, far, SEQ0)), {}, Detector(DEFAULT_CONFIG), T0)
    assert (len(result.processed), result.rejects) == (1, [])


def test_a_rejected_sample_leaves_its_device_state_untouched() -> None:
    device = Device()
    device.emit(20, heartRate=70, steps=0)
    before = encode_state(device.states["dev-1"])
    hostile(device, [telemetry(timestamp=iso_ms(device.t + DAY_MS), seq=device.seq)])
    assert encode_state(device.states["dev-1"]) == before


class _BrokenFor(Detector):
    """A detector with a bug that only one device's samples reach."""

    __slots__ = ("_device",)

    def __init__(self, device_id: str) -> None:
        super().__init__(DEFAULT_CONFIG)
        self._device = device_id

    def observe(
        self, state: DeviceState, device_id: str, *args: Any, **kwargs: Any
    ) -> tuple[AnomalyType, ...]:
        if device_id == self._device:
            raise ZeroDivisionError("float division by zero")
        return super().observe(state, device_id, *args, **kwargs)


def test_a_sample_whose_processing_raises_is_a_processing_error_and_the_batch_goes_on() -> None:
    payloads = [telemetry(deviceId="bad", seq=1), telemetry(deviceId="good", seq=1)]
    batch = decode_records(arriving_at(T0, payloads, SEQ0))
    result = process_batch(batch, {}, _BrokenFor("bad"), T0)
    [reject] = result.rejects
    assert (reject.reason, reject.device_id, reject.sequence_number) == (
        RejectReason.PROCESSING_ERROR,
        "bad",
        str(SEQ0),
    )
    assert reject.detail == "ZeroDivisionError: float division by zero"
    assert [r.device_id for r in result.processed] == ["good"]
    assert result.states["bad"].last_sequence == str(SEQ0)  # done: never redelivered for ever


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("seq_window", 2**20),
        ("seq_window", 0),
        ("baseline_half_life_ms", 0),
        ("activity_half_life_ms", 0),
        ("active_steps_per_min", 0.0),
        ("max_future_skew_ms", -1),
        ("tachycardia_bpm", 10_000),
    ],
)
def test_a_setting_that_would_cost_unbounded_work_or_divide_by_zero_is_refused_by_name(
    setting: str, value: float
) -> None:
    with pytest.raises(ValueError, match=f"detection setting {setting}="):
        DetectionConfig(**{setting: value})


# --- every class at random -----------------------------------------------------------------------

OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59)
EDGES = st.sampled_from(
    [
        "9999-12-31T23:59:59.999-00:01",
        "9999-12-31T23:30:00.000-05:00",
        "0001-01-01T00:30:00.000+01:00",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:59:59.999+01:00",
    ]
)


def at_offset(epoch_ms: int, minutes: int) -> str:
    """``epoch_ms`` written in local time at a UTC offset of ``minutes``."""
    local = iso_ms(epoch_ms + minutes * 60_000)[:-1]
    sign = "+" if minutes >= 0 else "-"
    return f"{local}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class HostileDevice(RuleBasedStateMachine):
    """One device among the samples any firmware might send; the stream's clock moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.device = Device(t=T0 + 400 * DAY_MS)
        self.device.emit(30, heartRate=70, steps=0)
        self.sent: list[dict[str, Any]] = []

    def send(self, payloads: list[dict[str, Any]]) -> None:
        self.sent.extend(payloads)
        reasons = hostile(self.device, payloads)
        assert RejectReason.PROCESSING_ERROR.value not in reasons  # the safety net is never needed

    @rule(seq=st.integers(0, INT64_MAX), minutes=OFFSETS, drift_ms=st.integers(-600_000, 600_000))
    def counter_anywhere(self, seq: int, minutes: int, drift_ms: int) -> None:
        self.send([telemetry(timestamp=at_offset(self.device.t + drift_ms, minutes), seq=seq)])

    @rule(ahead_ms=st.integers(1, 400 * DAY_MS))
    def clock_jumps_ahead(self, ahead_ms: int) -> None:
        self.send([telemetry(timestamp=iso_ms(self.device.t + ahead_ms), seq=self.device.seq)])

    @rule(behind_ms=st.integers(1, 400 * DAY_MS))
    def clock_jumps_back(self, behind_ms: int) -> None:
        self.send([telemetry(timestamp=iso_ms(self.device.t - behind_ms), seq=self.device.seq)])

    @rule(edge=EDGES, seq=st.none() | st.integers(0, INT64_MAX))
    def calendar_edge(self, edge: str, seq: int | None) -> None:
        self.send([telemetry(timestamp=edge, seq=seq)])

    @rule(copies=st.integers(1, 3))
    def repeats_itself(self, copies: int) -> None:
        if self.sent:
            self.send([self.sent[-1]] * copies)

    @rule(heart_rate=st.integers(0, 300), steps=st.integers(0, 10_000), seconds=st.integers(5, 120))
    def normal_samples(self, heart_rate: int, steps: int, seconds: int) -> None:
        self.device.seq = min(self.device.seq, INT64_MAX - 1_000)
        self.device.emit(seconds, heartRate=heart_rate, steps=steps)

    @invariant()
    def state_stays_small(self) -> None:
        for state in self.device.states.values():
            assert len(encode_state(state)) < STATE_BYTES_MAX

    def teardown(self) -> None:
        """Whatever came before, a resting tachycardia is still detected once it is past: the stream
        moves on by the future skew plus the clear window, and the counter wraps if it must."""
        device = self.device
        device.t += DEFAULT_CONFIG.max_future_skew_ms + DEFAULT_CONFIG.clear_ms + DEFAULT_CONFIG.recovery_ms
        device.seq = 0 if device.seq > INT64_MAX - 1_000 else device.seq
        device.emit(60, heartRate=70, steps=0)
        assert len(resting_tachycardia(device)) == 1


TestHostileDevice = HostileDevice.TestCase
TestHostileDevice.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
