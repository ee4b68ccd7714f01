"""Per-device anomaly detection in event time.

``Detector.observe`` advances one device's state by one in-order sample and returns the alerts that
sample raises (at most one per type: one alert per episode). Rules, with the thresholds of
``DetectionConfig``:

- TACHYCARDIA: heart rate ≥ tachycardia_bpm, at rest, for the sustain window.
- BRADYCARDIA: 0 < heart rate ≤ bradycardia_bpm for the sustain window.
- LOW_SPO2: spo2 < low_spo2_pct for the sustain window (a sample without spo2 is no evidence either way).
- HR_SPIKE: at rest, within the brady..tachy band (those have their own types), departing from the
  device's own exponentially weighted baseline by ≥ max(spike_sigma·sd, spike_min_delta_bpm).
- SENSOR_FAULT: the same heart-rate value repeated for no_reading_sustain_ms when it is 0 (no
  reading), or for flat_reading_sustain_ms otherwise (a stuck sensor).
- HIGH_HEART_RATE: heart rate > high_heart_rate_bpm; raised only when alert_high_heart_rate is set.

"At rest" means neither active (sustained movement) nor recovering from it (``service.core.activity``):
a few steps in a chair are rest, the minutes after a run are not. The baseline learns from resting
samples that do not depart from it. A departure that starts within movement_hold_ms of a movement is
explained by it: such samples start no HR_SPIKE, though one already under way goes on through them.
"""

from __future__ import annotations

import math

from service.core.activity import ActivityContext, ActivityModel
from service.core.anomalies import SEVERITY, Alert, AnomalyType, DetectionConfig, alert_id
from service.core.records import iso_ms
from service.core.state import _QUIET_EPISODES, EPISODE_TYPES, NONE, QUIET, DeviceState, Episode

_TACHY, _BRADY, _SPO2, _SPIKE, _FAULT, _HIGH = range(6)
_NOMINAL_INTERVAL_MS = 5_000
_ACTIVE, _STILL = ActivityContext.ACTIVE, ActivityContext.STILL


class Detector:
    __slots__ = ("_activity", "_cfg", "_ln2_over_half_life")

    def __init__(self, config: DetectionConfig) -> None:
        self._cfg = config
        self._ln2_over_half_life = math.log(2) / config.baseline_half_life_ms
        self._activity = ActivityModel(config)

    @property
    def config(self) -> DetectionConfig:
        return self._cfg

    def observe(
        self,
        state: DeviceState,
        device_id: str,
        t: int,
        heart_rate: int,
        steps: int,
        spo2: int | None,
        alerts: list[Alert],
    ) -> tuple[AnomalyType, ...]:
        """Advance ``state`` by one in-order sample; append raised alerts to ``alerts`` and return
        the anomaly types whose episodes are open after it."""
        cfg = self._cfg
        max_gap = cfg.max_gap_ms
        previous = state.last_event_ms
        elapsed = gap = t - previous if previous != NONE else _NOMINAL_INTERVAL_MS
        if gap > max_gap:
            gap = max_gap
            state.flat_since = t  # a dropout breaks a run of identical readings
        context = self._activity.step(state, t, elapsed, gap, steps)
        at_rest = context != _ACTIVE
        if heart_rate != state.flat_value:
            state.flat_value, state.flat_since = heart_rate, t
        state.last_event_ms = t

        # HR_SPIKE: a recent movement explains a departure that starts with it, so it starts no
        # episode (no evidence either way); a departure already under way goes on through it.
        spiking: bool | None = False
        if at_rest and cfg.bradycardia_bpm < heart_rate < cfg.tachycardia_bpm:
            spiking = self._baseline_step(state, heart_rate, gap)
            if spiking and context != _STILL and state.episodes[_SPIKE].quiet:
                spiking = None
        episodes = state.episodes
        holds = (
            at_rest and heart_rate >= cfg.tachycardia_bpm,
            0 < heart_rate <= cfg.bradycardia_bpm,
            None if spo2 is None else spo2 < cfg.low_spo2_pct,  # no SpO2: no evidence either way
            spiking,
        )
        # SENSOR_FAULT: a zero (no reading) is a symptom from the first sample and must persist for
        # no_reading_sustain_ms; a repeated non-zero value counts only once it has lasted
        # flat_reading_sustain_ms, since real heart rates repeat a value now and then.
        if heart_rate == 0 or t - state.flat_since >= cfg.flat_reading_sustain_ms:
            fault_since = state.flat_since
        else:
            fault_since = NONE
        high_holds = cfg.alert_high_heart_rate and heart_rate > cfg.high_heart_rate_bpm
        if (episodes is _QUIET_EPISODES or all(e is QUIET for e in episodes)) and not (
            any(holds) or fault_since != NONE or high_holds
        ):
            return ()
        return self._step_episodes(
            state, device_id, t, heart_rate, spo2, holds, fault_since, high_holds, alerts
        )

    def _step_episodes(
        self,
        state: DeviceState,
        device_id: str,
        t: int,
        heart_rate: int,
        spo2: int | None,
        holds: tuple[bool, bool, bool | None, bool | None],
        fault_since: int,
        high_holds: bool,
        alerts: list[Alert],
    ) -> tuple[AnomalyType, ...]:
        cfg = self._cfg
        clear, max_gap = cfg.clear_ms, cfg.max_gap_ms
        sustains = (
            cfg.tachycardia_sustain_ms,
            cfg.bradycardia_sustain_ms,
            cfg.low_spo2_sustain_ms,
            cfg.spike_sustain_ms,
        )
        stepped: list[Episode] = []
        raised: list[int] = []
        for kind, (current, holding, sustain) in enumerate(
            zip(state.episodes[:4], holds, sustains, strict=True)
        ):
            if holding is None:  # no evidence either way: the episode stays as it is
                stepped.append(current)
                continue
            following, new = current.observe(holding, t, sustain, clear, max_gap)
            stepped.append(following)
            if new:
                raised.append(kind)
        fault_sustain = cfg.no_reading_sustain_ms if heart_rate == 0 else cfg.flat_reading_sustain_ms
        fault, new = state.episodes[_FAULT].advance(fault_since, t, fault_sustain, clear)
        stepped.append(fault)
        if new:
            raised.append(_FAULT)
        high, new = state.episodes[_HIGH].observe(high_holds, t, 0, clear, max_gap)
        stepped.append(high)
        if new:
            raised.append(_HIGH)
        state.episodes = _QUIET_EPISODES if all(e is QUIET for e in stepped) else tuple(stepped)
        for kind in raised:
            alerts.append(self._alert(kind, state, device_id, t, heart_rate, spo2))
        return state.open_anomalies()

    def _departs(self, state: DeviceState, heart_rate: int) -> bool:
        """Whether ``heart_rate`` departs from a warm resting baseline by the spike limit."""
        cfg = self._cfg
        if state.baseline_samples < cfg.baseline_warmup_samples:
            return False
        limit = max(
            cfg.spike_sigma * max(math.sqrt(state.baseline_var), cfg.baseline_min_sd_bpm),
            cfg.spike_min_delta_bpm,
        )
        return abs(heart_rate - state.baseline_mean) >= limit

    def _baseline_step(self, state: DeviceState, heart_rate: int, gap: int) -> bool:
        """Spike test against the device's resting baseline, then learn from the sample unless it is
        a spike. The EWMA weight is first-order in the gap (gap ≪ half-life; gaps are capped)."""
        samples = state.baseline_samples
        if samples == 0:
            state.baseline_mean, state.baseline_var, state.baseline_samples = float(heart_rate), 0.0, 1
            return False
        if self._departs(state, heart_rate):
            return True
        delta = heart_rate - state.baseline_mean
        weight = max(self._ln2_over_half_life * gap, 1.0 / (samples + 1))
        state.baseline_mean += weight * delta
        state.baseline_var = (1.0 - weight) * (state.baseline_var + weight * delta * delta)
        state.baseline_samples = samples + 1
        return False

    def _alert(
        self, kind: int, state: DeviceState, device_id: str, t: int, heart_rate: int, spo2: int | None
    ) -> Alert:
        cfg = self._cfg
        anomaly = EPISODE_TYPES[kind]
        started = state.episodes[kind].active_start
        seconds = (t - started) // 1000
        threshold: float | None = None
        baseline: float | None = None
        value: float = heart_rate
        if kind == _TACHY:
            threshold = cfg.tachycardia_bpm
            message = f"heart rate {heart_rate} bpm ≥ {threshold} bpm at rest for {seconds} s"
        elif kind == _BRADY:
            threshold = cfg.bradycardia_bpm
            message = f"heart rate {heart_rate} bpm ≤ {threshold} bpm for {seconds} s"
        elif kind == _SPO2:
            value = spo2 if spo2 is not None else 0
            threshold = cfg.low_spo2_pct
            message = f"SpO2 {value:.0f}% < {threshold}% for {seconds} s"
        elif kind == _SPIKE:
            baseline = round(state.baseline_mean, 1)
            message = f"heart rate {heart_rate} bpm departs from this device's resting {baseline} bpm"
        elif kind == _FAULT:
            window_ms = cfg.no_reading_sustain_ms if heart_rate == 0 else cfg.flat_reading_sustain_ms
            threshold = window_ms / 1000
            what = "no heart-rate reading" if heart_rate == 0 else f"heart rate stuck at {heart_rate} bpm"
            message = f"sensor fault: {what} for {seconds} s"
        else:
            threshold = cfg.high_heart_rate_bpm
            message = f"heart rate {heart_rate} bpm > {threshold} bpm"
        return Alert(
            alertId=alert_id(device_id, anomaly, started),
            deviceId=device_id,
            type=anomaly,
            severity=SEVERITY[anomaly],
            startedAt=iso_ms(started),
            detectedAt=iso_ms(t),
            value=value,
            threshold=threshold,
            baseline=baseline,
            message=message,
        )
