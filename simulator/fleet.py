"""A deterministic fleet of wearables: telemetry in send order, plus its ground truth.

Contract:

- ``Fleet(devices, seed, start_ms, end_ms, …).ticks()`` yields one ``Sends`` per interval ``k``
  (``start_ms + (k + 1)·interval_ms ≤ end_ms``). Device ``i`` samples at ``start + k·interval +
  i·interval/devices`` (fleet time: devices spread over the interval) and stamps its own clock: that
  time plus a fixed skew and a per-sample jitter. Within a tick, sends are in device order.
- Deterministic: the same arguments give byte-identical payloads and truth. One ``random.Random``
  per fleet, devices visited in a fixed order each tick; per-device state is kept in flat lists
  (no per-device objects), so 100K devices fit comfortably in memory.
- ``drain_truth()`` returns the ground truth completed since the last call (see ``simulator.truth``);
  after ``ticks()`` is exhausted every injected item has been reported.
- With ``Scenario.nn_intervals_ms`` (a recorded NN-interval series, ``simulator.variability``) each
  device's resting rate follows that recording, from its own starting point, instead of synthetic
  noise; everything else (segments, faults, ground truth) is as without it.
- How devices send is ``simulator.uplink``'s: each sample its own message (the default; payloads as
  they always were) or batches of ``Scenario.samples_per_message`` with urgent flushes and offline
  backlogs. Batching draws nothing from the fleet's ``Random``, so the samples each device makes, their
  order and the ground truth are the same whatever the batch size. After the last tick, ``ticks()``
  yields the messages devices still held (sent at ``end_ms``), if any.
- The model is in ``simulator.physiology``, the scenario (rates, durations, guarantees) in
  ``simulator.scenario``; rare events (segment changes, stream faults) leave the hot loop through
  ``simulator.events``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from random import Random

from service.runtime.publishing import Message
from simulator import physiology as phys
from simulator.scenario import MS_PER_HOUR, Scenario, Segment
from simulator.truth import TruthEntry
from simulator.uplink import SAMPLE_PREFIX, Batching, Direct, Firmware, Uplink
from simulator.variability import rhythm


@dataclass(slots=True)
class Sends:
    """One tick's messages in send order, as parallel lists."""

    device_ids: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    event_ms: list[int] = field(default_factory=list)
    send_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.payloads)

    def messages(self) -> list[Message]:
        return list(map(Message, self.device_ids, self.payloads, self.event_ms, self.send_ms))


@dataclass(slots=True)
class FleetCounts:
    """``generated`` samples made by devices; ``sent`` messages emitted and ``samples_sent`` the samples
    in them (duplicates twice, dropped samples never); the rest count injected stream faults
    (``buffered`` samples sent in bursts, ``malformed`` samples); ``offline`` devices that were offline
    and have reconnected (``simulator.uplink``)."""

    generated: int = 0
    sent: int = 0
    samples_sent: int = 0
    dropped: int = 0
    buffered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    malformed: int = 0
    offline: int = 0


class Fleet:
    """See the module docstring. Not thread-safe; ``ticks()`` may be iterated once."""

    def __init__(
        self,
        devices: int,
        seed: int,
        start_ms: int,
        end_ms: int,
        interval_ms: int = 5_000,
        scenario: Scenario | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError(f"devices must be ≥ 1, got {devices}")
        if interval_ms < 1_000:
            raise ValueError(f"interval must be ≥ 1 s, got {interval_ms} ms")
        if end_ms - start_ms < interval_ms:
            raise ValueError("the time range must cover at least one interval")
        self.devices, self.start_ms, self.end_ms, self.interval_ms = devices, start_ms, end_ms, interval_ms
        self.scenario = scenario or Scenario()
        self.rng = Random(seed)
        self.counts = FleetCounts()
        self.truth: list[TruthEntry] = []
        self.circadian: list[float] = phys.circadian_table(start_ms)
        self._init_devices(devices)
        batched = self.scenario.samples_per_message > 1 or self.scenario.offline_share > 0
        self.uplink: Uplink = Batching(self, seed) if batched else Direct(self)
        from simulator.events import EventEngine  # noqa: PLC0415  (events imports this module's types)

        self.events = EventEngine(self)

    def _init_devices(self, n: int) -> None:
        rng, interval = self.rng, self.interval_ms
        uniform, randint = rng.uniform, rng.randint
        self.ids = [f"wearable-{i:06d}" for i in range(n)]
        if self.scenario.samples_per_message > 1:  # batched samples: the envelope names the device
            self.prefixes = [SAMPLE_PREFIX] * n
        else:
            self.prefixes = [f'{{"deviceId":"{device_id}","timestamp":"' for device_id in self.ids]
        self.phase = [i * interval // n for i in range(n)]
        self.resting = [uniform(*phys.RESTING_HR) for _ in range(n)]
        self.hrv = [uniform(*phys.HRV_SCALE) for _ in range(n)]
        self.zone = [randint(4, 14) for _ in range(n)]  # UTC-8 .. UTC+2
        self.skew = [randint(-phys.CLOCK_SKEW_MS, phys.CLOCK_SKEW_MS) for _ in range(n)]
        self.spo2 = [randint(*phys.SPO2_BASE) for _ in range(n)]
        self.skin = [randint(*phys.SKIN_TEMP_TENTHS) for _ in range(n)]
        self.battery = [randint(20_000, phys.BATTERY_MILLI) for _ in range(n)]
        self.drain = [
            randint(*phys.DRAIN_MILLI_PER_HOUR) * interval // MS_PER_HOUR for _ in range(n)
        ]  # per interval; negative while charging
        self.seq = [randint(0, 1_000_000) for _ in range(n)]
        self.noise = [0.0] * n
        self.fast = [0.0] * n
        self.slow = [0.0] * n
        self.drive = [0.0] * n  # heart-rate excess the current activity bout drives towards
        self.cadence = [0] * n  # steps per interval of the current bout (0: resting)
        self.segment = [0] * n  # a Segment value
        self.segment_end = [0] * n
        self.level = [0.0] * n  # the current anomaly's heart rate, SpO2 or spike jump
        self.first_ms = [0] * n  # event time of the current segment's first sample
        self.last_ms = [0] * n  # event time of the current segment's latest sample
        rested = self.scenario.min_rest_ms if self.scenario.rested_at_start else 0
        self.rested_since = [self.start_ms - rested] * n
        # A recorded rhythm replaces the synthetic noise (its draws stay, so the events do too).
        self.rhythm = rhythm(self.scenario.nn_intervals_ms, interval) if self.scenario.nn_intervals_ms else []
        if self.rhythm:
            self.hrv = [0.0] * n
        self.rhythm_start = [i * len(self.rhythm) // n for i in range(n)]

    def drain_truth(self) -> list[TruthEntry]:
        entries, self.truth = self.truth, []
        return entries

    def ticks(self) -> Iterator[Sends]:
        for k in range((self.end_ms - self.start_ms) // self.interval_ms):
            yield self._tick(self.start_ms + k * self.interval_ms)
        last = Sends()
        self.uplink.finish(last, self.end_ms)
        if last:
            self.counts.sent += len(last)
            yield last
        self.events.finish()

    def _resting(self, base: int) -> list[float]:
        """Each device's resting rate at fleet time ``base``: its own, times the recorded rhythm."""
        beats = self.rhythm
        if not beats:
            return self.resting
        k, m = (base - self.start_ms) // self.interval_ms, len(beats)
        return [
            rate * beats[(k + start) % m] for rate, start in zip(self.resting, self.rhythm_start, strict=True)
        ]

    def _tick(self, base: int) -> Sends:  # noqa: PLR0912, PLR0915  (the hot loop: inline is speed)
        out = Sends()
        out_ids, out_payloads, out_event, out_send = out.device_ids, out.payloads, out.event_ms, out.send_ms
        events = self.events
        special, start_segment, end_segment = events.special, events.start_segment, events.end_segment
        anomalous, stream_fault = events.anomalous, events.stream_fault
        hazard, fault_threshold = events.hazard_units, events.fault_units
        incidental, burst_steps, burst_bpm = (
            events.incidental_units,
            events.burst_steps,
            phys.BURST_BPM_PER_STEP,
        )
        self.circadian = circadian = phys.circadian_table(base)
        getrandbits, random = self.rng.getrandbits, self.rng.random
        ids, prefixes, phase, skew = self.ids, self.prefixes, self.phase, self.skew
        resting, hrv, zone, spo2_base, skin = self._resting(base), self.hrv, self.zone, self.spo2, self.skin
        battery, drain, seq = self.battery, self.drain, self.seq
        noise, fast, slow, drive, cadence = self.noise, self.fast, self.slow, self.drive, self.cadence
        segment, segment_end = self.segment, self.segment_end
        rise, fall, slow_rate = events.rise, events.fall, events.slow_rate
        fidget = 1 if self.interval_ms >= 4_000 else 0  # the odd step a wrist counts at rest
        decay, kick, floor = phys.NOISE_DECAY, phys.NOISE_KICK, phys.MIN_RESTING_READING
        fast_share, slow_share = phys.FAST_SHARE, phys.SLOW_SHARE
        minute_prefix = events.timestamps.minute_prefix
        tachycardia = Segment.TACHYCARDIA.value
        uplink = self.uplink
        batched = uplink.batched
        if isinstance(uplink, Batching):  # the firmware's buffers and memory (see simulator.uplink)
            quota, flush, pending, pending_ev = (
                uplink.quota,
                uplink.flush,
                uplink.pending,
                uplink.pending_ev,
            )
            last_hr, same_since, brisk_at, brisk_since, moving_until, brisk = (
                uplink.last_hr,
                uplink.same_since,
                uplink.brisk_at,
                uplink.brisk_since,
                uplink.moving_until,
                uplink.brisk_steps,
            )
            interval, brisk_span = self.interval_ms, (Firmware.BRISK_SAMPLES - 1) * self.interval_ms
            stuck_ms, hold_ms = Firmware.STUCK_MS, Firmware.MOVING_HOLD_MS
            low_bpm, high_bpm, jump_bpm, low_spo2 = (
                Firmware.LOW_BPM,
                Firmware.HIGH_BPM,
                Firmware.JUMP_BPM,
                Firmware.LOW_SPO2,
            )
        minute, prefix = -1, ""
        for i in range(self.devices):
            t = base + phase[i]
            b = getrandbits(48)
            seg = segment[i]
            if seg:
                if t >= segment_end[i]:
                    seg = end_segment(i, t)
            elif b >> 31 < hazard:
                seg = start_segment(i, t)
            cad = cadence[i]
            if cad:
                steps = cad + ((b >> 9) & 3) - 1
            elif hazard <= b >> 31 < incidental:  # incidental movement: a burst of steps at rest
                steps = burst_steps[(b >> 9) & 15]
                fast[i] += steps * burst_bpm
            else:
                steps = 0 if (b >> 9) & 31 else fidget
            d = drive[i]
            f = fast[i]
            target = d * fast_share
            f += (target - f) * (rise if target > f else fall)
            fast[i] = f
            s = slow[i]
            s += (d * slow_share - s) * slow_rate
            slow[i] = s
            nz = noise[i] * decay + (random() - 0.5) * kick
            noise[i] = nz
            hr = int(resting[i] + circadian[zone[i]] + f + s + nz * hrv[i] + 0.5)
            hr = max(hr, floor)
            bat = battery[i] - drain[i]
            if bat < phys.CHARGE_BELOW_MILLI or bat > phys.BATTERY_MILLI:
                bat = events.charge(i, bat)
            battery[i] = bat
            sq = seq[i] + 1
            seq[i] = sq
            ev = t + skew[i] + (b & 255) - 128
            if seg >= tachycardia:
                payload = anomalous(i, seg, ev, hr, steps, spo2_base[i], bat, sq)
                if batched:
                    hr, sp = events.reported_hr, events.reported_spo2
            else:
                sec = ev // 1000
                if sec // 60 != minute:
                    minute = sec // 60
                    prefix = minute_prefix(minute)
                sk = skin[i] + ((b >> 14) & 1)
                sp = spo2_base[i] - ((b >> 8) & 1)
                payload = (
                    f'{prefixes[i]}{prefix}{sec - minute * 60:02d}.{ev % 1000:03d}Z","heartRate":{hr},'
                    f'"steps":{steps},"spo2":{sp},"skinTemp":{sk // 10}.{sk % 10},'
                    f'"battery":{bat // 1000},"seq":{sq}}}'
                ).encode()
            if batched:
                urgent = False
                if hr == last_hr[i]:
                    urgent = t - same_since[i] >= stuck_ms
                else:
                    last_hr[i], same_since[i] = hr, t
                if steps >= brisk:
                    if brisk_at[i] != t - interval:
                        brisk_since[i] = t
                    brisk_at[i] = t
                    if t - brisk_since[i] >= brisk_span:
                        moving_until[i] = t + hold_ms
                if (
                    hr <= low_bpm
                    or sp < low_spo2
                    or ((hr >= high_bpm or hr - resting[i] >= jump_bpm) and moving_until[i] <= t)
                ):
                    urgent = True
                if (b >> 15) & 0xFFFF < fault_threshold or i in special:
                    stream_fault(i, t, ev, payload, (b >> 15) & 0xFFFF, out)
                    if urgent:
                        flush(out, i, t)
                else:
                    samples = pending[i]
                    samples.append(payload)
                    pending_ev[i].append(ev)
                    if urgent or len(samples) >= quota[i]:
                        flush(out, i, t)
            elif (b >> 15) & 0xFFFF < fault_threshold or i in special:
                stream_fault(i, t, ev, payload, (b >> 15) & 0xFFFF, out)
            else:
                out_ids.append(ids[i])
                out_payloads.append(payload)
                out_event.append(ev)
                out_send.append(t)
        counts = self.counts
        counts.generated += self.devices
        counts.sent += len(out_payloads)
        if not batched:
            counts.samples_sent += len(out_payloads)
        return out
