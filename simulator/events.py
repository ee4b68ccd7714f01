"""The fleet's rare events: segment changes, anomalous samples, battery charging and stream faults.

``Fleet._tick`` calls into ``EventEngine`` only when something happens to a device (a hazard fires,
a segment ends, an anomaly is in progress, a stream fault is due), so the common sample costs no
call. Everything here draws from the fleet's single ``Random`` in tick and device order, which
keeps the fleet deterministic. The placement guarantees are those of ``simulator.scenario.Scenario``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulator import physiology as phys
from simulator.scenario import ANOMALY_TYPE, MS_PER_HOUR, MS_PER_MINUTE, Segment
from simulator.truth import TruthEntry

if TYPE_CHECKING:
    from simulator.fleet import Fleet, Sends

HAZARD_BITS = 17  # the tick loop compares the top 17 of 48 random bits with ``hazard_units``
FAULT_BITS = 16
OUTAGE_MARGIN_MS = 2 * MS_PER_MINUTE  # an outage ends this long before the simulation does
_STARTABLE = [s for s in Segment if s is not Segment.REST]


@dataclass(slots=True)
class Outage:
    """A device offline until ``until``: samples are lost (DROPOUT) or buffered (RECONNECT_BURST)."""

    kind: Segment
    until: int
    first: int = -1
    last: int = -1
    buffered: list[tuple[bytes, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Held:
    """A sample held back one interval, to be sent after its successor (OUT_OF_ORDER)."""

    payload: bytes
    event_ms: int


class EventEngine:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        scenario, interval = fleet.scenario, fleet.interval_ms
        self.special: dict[int, Outage | Held] = {}
        self.uplink = fleet.uplink
        self.reported_hr, self.reported_spo2 = 0, 100
        self.timestamps = phys.TimestampFormat()
        self.rise = phys.step_factor(interval, phys.RISE_S)
        self.fall = phys.step_factor(interval, phys.FALL_S)
        self.slow_rate = phys.step_factor(interval, phys.SLOW_S)
        self.choices: list[tuple[float, Segment]] = []
        total = 0.0
        for segment in _STARTABLE:
            total += scenario.rates.get(segment, 0.0)
            self.choices.append((total, segment))
        self.total_rate = total
        self.hazard_units = round(total * interval / MS_PER_HOUR * (1 << HAZARD_BITS))
        # Incidental bursts take the hazard draws just above the segment hazards': disjoint from them,
        # and no extra draw, so turning them on or off leaves every segment and fault where it was.
        self.incidental_units = self.hazard_units + round(
            scenario.incidental_rate * interval / MS_PER_HOUR * (1 << HAZARD_BITS)
        )
        self.burst_steps = burst_table(*scenario.incidental_steps)
        self.duplicate_units = round(scenario.duplicate_prob * (1 << FAULT_BITS))
        self.reorder_units = self.duplicate_units + round(scenario.out_of_order_prob * (1 << FAULT_BITS))
        self.fault_units = self.reorder_units + round(scenario.malformed_prob * (1 << FAULT_BITS))

    # --- segments ---------------------------------------------------------------------------

    def start_segment(self, i: int, t: int) -> int:
        """A hazard fired for resting device ``i`` at fleet time ``t``: start what it drew, if the
        scenario's guarantees allow it there; return the device's segment."""
        fleet = self.fleet
        rng = fleet.rng
        drawn = rng.random() * self.total_rate
        seg = next((s for cumulative, s in self.choices if drawn < cumulative), _STARTABLE[-1])
        low, high = fleet.scenario.durations[seg]
        duration = rng.randint(low, high)
        if i in self.special:
            return 0
        if seg in (Segment.DROPOUT, Segment.RECONNECT_BURST):
            if t + duration + OUTAGE_MARGIN_MS > fleet.end_ms:
                return 0
            self.special[i] = Outage(seg, t + duration)
            fleet.rested_since[i] = max(fleet.rested_since[i], t + duration)
            return 0
        base_now = fleet.resting[i] + fleet.circadian[fleet.zone[i]]
        if seg == Segment.WALK:
            fleet.drive[i] = rng.uniform(*phys.WALK_EXCESS_BPM)
            fleet.cadence[i] = self._cadence(rng.uniform(*phys.WALK_STEPS_PER_MIN))
        elif seg == Segment.RUN:
            fleet.drive[i] = rng.uniform(*phys.RUN_HR_BPM) - base_now
            fleet.cadence[i] = self._cadence(rng.uniform(*phys.RUN_STEPS_PER_MIN))
            fleet.first_ms[i] = t + fleet.skew[i]
        else:
            if t - fleet.rested_since[i] < fleet.scenario.min_rest_ms:
                return 0
            if seg == Segment.HR_SPIKE and t - fleet.start_ms < fleet.scenario.baseline_warmup_ms:
                return 0  # the detector needs a warm resting baseline to see a departure from it
            if t + duration + 2 * fleet.interval_ms > fleet.end_ms:
                return 0
            level = self._anomaly_level(seg, base_now)
            if level is None:
                return 0
            fleet.level[i] = level
            fleet.first_ms[i] = -1
        fleet.segment[i] = seg
        fleet.segment_end[i] = t + duration
        return seg

    def _cadence(self, steps_per_min: float) -> int:
        return round(steps_per_min * self.fleet.interval_ms / MS_PER_MINUTE)

    def _anomaly_level(self, seg: Segment, base_now: float) -> float | None:
        rng = self.fleet.rng
        if seg == Segment.TACHYCARDIA:
            return rng.uniform(*phys.TACHYCARDIA_BPM)
        if seg == Segment.BRADYCARDIA:
            return rng.uniform(*phys.BRADYCARDIA_BPM)
        if seg == Segment.LOW_SPO2:
            return float(rng.randint(*phys.LOW_SPO2_PCT))
        if seg == Segment.HR_SPIKE:
            low, high = phys.SPIKE_JUMP_BPM
            headroom = phys.SPIKE_CEILING_BPM - base_now
            return None if headroom < low else rng.uniform(low, min(high, headroom))
        if seg == Segment.STUCK_READING:
            return -1.0  # takes the first sample's reading
        return 0.0

    def end_segment(self, i: int, t: int) -> int:
        """Device ``i``'s segment is over at ``t``: report it and return to rest (segment 0)."""
        fleet = self.fleet
        seg = Segment(fleet.segment[i])
        device_id = fleet.ids[i]
        scenario = fleet.scenario
        if seg == Segment.RUN:
            window_end = t + fleet.skew[i] + scenario.recovery_ms
            fleet.truth.append(TruthEntry("activity", device_id, "RUN", fleet.first_ms[i], window_end))
            fleet.rested_since[i] = t + max(0, scenario.recovery_ms - scenario.min_rest_ms)
        else:
            if seg != Segment.WALK:
                detail = seg.name if seg in (Segment.NO_READING, Segment.STUCK_READING) else ""
                entry = TruthEntry(
                    "episode", device_id, ANOMALY_TYPE[seg], fleet.first_ms[i], fleet.last_ms[i], detail
                )
                fleet.truth.append(entry)
            fleet.rested_since[i] = t
        fleet.segment[i] = 0
        fleet.drive[i] = 0.0
        fleet.cadence[i] = 0
        return 0

    def anomalous(
        self, i: int, seg: int, ev: int, hr: int, steps: int, spo2_base: int, battery: int, seq: int
    ) -> bytes:
        """The payload of device ``i``'s sample at event time ``ev`` during an anomaly episode; its
        heart rate and SpO2 (100 when absent) are left in ``reported_hr`` and ``reported_spo2``."""
        fleet = self.fleet
        rng = fleet.rng
        if fleet.first_ms[i] < 0:
            fleet.first_ms[i] = ev
        fleet.last_ms[i] = ev
        level = fleet.level[i]
        spo2: int | None = spo2_base - rng.getrandbits(1)
        if seg == Segment.TACHYCARDIA:
            hr = int(level + (rng.random() - 0.5) * 6.0)
        elif seg == Segment.BRADYCARDIA:
            hr = min(40, max(30, round(level + (rng.random() - 0.5) * 4.0)))
        elif seg == Segment.LOW_SPO2:
            spo2 = int(level) + rng.randint(-1, 1)
        elif seg == Segment.HR_SPIKE:
            base_now = fleet.resting[i] + fleet.circadian[fleet.zone[i]]
            hr = min(118, round(base_now + level + (rng.random() - 0.5) * 3.0))
        elif seg == Segment.NO_READING:
            hr, spo2 = 0, None  # the optical sensor lost contact: neither reading
        else:  # STUCK_READING
            if level < 0:
                fleet.level[i] = level = float(hr)
            hr = int(level)
        self.reported_hr, self.reported_spo2 = hr, 100 if spo2 is None else spo2
        return phys.encode_sample(
            fleet.prefixes[i], self.timestamps.format(ev), hr, steps, spo2, fleet.skin[i], battery, seq
        )

    def charge(self, i: int, battery: int) -> int:
        """Battery crossed a bound: start charging when low, stop (and drain again) when full."""
        fleet = self.fleet
        if battery < phys.CHARGE_BELOW_MILLI:
            fleet.drain[i] = -phys.CHARGE_MILLI_PER_HOUR * fleet.interval_ms // MS_PER_HOUR
            return battery
        drain = fleet.rng.randint(*phys.DRAIN_MILLI_PER_HOUR) * fleet.interval_ms // MS_PER_HOUR
        fleet.drain[i] = max(1, drain)
        return phys.BATTERY_MILLI

    # --- stream faults ----------------------------------------------------------------------

    def stream_fault(self, i: int, t: int, ev: int, payload: bytes, draw: int, out: Sends) -> None:
        """Send device ``i``'s sample (``payload``, event time ``ev``, fleet time ``t``) into ``out``
        through its outage or held sample, or with the per-sample fault that ``draw`` selects."""
        fleet, uplink = self.fleet, self.uplink
        counts, device_id = fleet.counts, fleet.ids[i]
        state = self.special.get(i)
        reconnected = False
        if isinstance(state, Outage):
            if t < state.until:
                if state.first < 0:
                    state.first = ev
                state.last = ev
                if state.kind == Segment.RECONNECT_BURST:
                    state.buffered.append((payload, ev))
                    counts.buffered += 1
                else:
                    counts.dropped += 1
                return
            del self.special[i]
            fleet.truth.append(TruthEntry("fault", device_id, state.kind.name, state.first, state.last))
            for buffered, event_ms in state.buffered:
                uplink.push(out, i, buffered, event_ms, t)
            reconnected = bool(state.buffered)
        elif isinstance(state, Held):
            del self.special[i]
            uplink.push(out, i, payload, ev, t)
            uplink.push(out, i, state.payload, state.event_ms, t)
            fleet.truth.append(TruthEntry("fault", device_id, "OUT_OF_ORDER", state.event_ms, ev))
            return
        elif draw < self.duplicate_units:
            uplink.push(out, i, payload, ev, t)
            fleet.truth.append(TruthEntry("fault", device_id, "DUPLICATE", ev, ev))
            counts.duplicates += 1
        elif draw < self.reorder_units:
            if t + 2 * fleet.interval_ms < fleet.end_ms:
                self.special[i] = Held(payload, ev)
                counts.out_of_order += 1
                return
        elif draw < self.fault_units:
            payload, variant = uplink.malformed(i, payload, fleet.rng)
            fleet.truth.append(TruthEntry("fault", device_id, "MALFORMED", ev, ev, variant))
            counts.malformed += 1
        uplink.push(out, i, payload, ev, t)
        if reconnected:
            uplink.flush(out, i, t)  # the burst's backlog goes out at once

    def finish(self) -> None:
        """The simulation ended: report runs still in progress (their windows as planned)."""
        fleet = self.fleet
        for i, seg in enumerate(fleet.segment):
            if seg == Segment.RUN:
                window_end = fleet.segment_end[i] + fleet.skew[i] + fleet.scenario.recovery_ms
                fleet.truth.append(TruthEntry("activity", fleet.ids[i], "RUN", fleet.first_ms[i], window_end))


def burst_table(low: int, high: int) -> list[int]:
    """16 burst sizes from ``low`` to ``high`` steps, small ones more often (a draw picks one)."""
    return [round(low + (high - low) * (k / 15) ** 1.5) for k in range(16)]
