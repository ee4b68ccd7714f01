"""How devices send their samples: each at once (``Direct``) or in batches (``Batching``).

Contract (the wire format is /work/notes/batch-contract.md's, see DESIGN.md):

- ``Direct`` (one sample per message, never offline): every sample leaves when it is made, as its own
  single-sample payload: the fleet's messages are byte for byte those of a fleet without batching.
- ``Batching``: each device buffers its samples and sends ``{"deviceId":"…","samples":[…]}`` (compact
  JSON, samples without ``deviceId``, oldest first) once it holds ``samples_per_message`` of them (its
  first message fewer: devices start out of step, as real ones are), or
  at once — the whole buffer — when a sample is abnormal (``Firmware``: an urgent flush, so alerts are
  not delayed by batching). With one sample per message (offline devices only), messages are
  single-sample payloads.
- Offline: ``offline_share`` of the devices (chosen, with their windows, by a ``Random`` of their own:
  the fleet's draws and ground truth are those without offline time) are offline once for
  ``offline_ms`` of fleet time, the window ending at least ``OFFLINE_MARGIN_MS`` before the run does.
  Offline, a device keeps sampling and buffering; its first sample after the window sends the backlog
  in messages of ``samples_per_message``, in order (the last one may be shorter), then it continues
  live. Samples keep their event times; ``send_ms`` is the reconnect time. The window is reported in
  the ground truth as a fault ``OFFLINE`` (device clock) when the device reconnects.
- A message's ``event_ms`` is its last sample's event time, ``send_ms`` the fleet time it leaves.
- ``finish(end_ms)``: the run is over, every device sends what it still holds (at ``end_ms``).
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Protocol

from simulator.faults import malformed_payload, malformed_sample
from simulator.scenario import MS_PER_MINUTE
from simulator.truth import TruthEntry

if TYPE_CHECKING:
    from simulator.fleet import Fleet, Sends

OFFLINE_FAULT = "OFFLINE"
OFFLINE_MARGIN_MS = 2 * MS_PER_MINUTE
SAMPLE_PREFIX = '{"timestamp":"'  # a batched sample starts so (no deviceId: the envelope has it)


class Firmware:
    """What a wearable's firmware counts as abnormal (sends the buffer at once). A sample is abnormal
    when its heart rate is ≥ ``HIGH_BPM`` or ``JUMP_BPM`` above the device's resting rate — unless the
    wrist has moved at a walking cadence for ``BRISK_SAMPLES`` samples in a row within the last
    ``MOVING_HOLD_MS`` (exercise and its recovery) — or ≤ ``LOW_BPM`` (0: no reading), SpO2 below
    ``LOW_SPO2``, or the heart rate has not changed for ``STUCK_MS``."""

    HIGH_BPM = 120
    LOW_BPM = 40
    JUMP_BPM = 25
    LOW_SPO2 = 90
    STUCK_MS = 60_000
    BRISK_STEPS_PER_MIN = 60
    BRISK_SAMPLES = 3
    MOVING_HOLD_MS = 5 * MS_PER_MINUTE


class Uplink(Protocol):
    """The sending side of a fleet: ``push`` one sample of device ``i`` at fleet time ``t``, ``flush``
    what it holds now (an urgent sample, a backlog), ``malformed`` a broken stand-in for a sample."""

    batched: bool

    def push(self, out: Sends, i: int, payload: bytes, event_ms: int, t: int) -> None: ...

    def flush(self, out: Sends, i: int, t: int) -> None: ...

    def malformed(self, i: int, payload: bytes, rng: Random) -> tuple[bytes, str]: ...

    def finish(self, out: Sends, end_ms: int) -> None: ...


class Direct:
    """Each sample its own message, sent at once."""

    batched = False

    def __init__(self, fleet: Fleet) -> None:
        self.ids = fleet.ids

    def push(self, out: Sends, i: int, payload: bytes, event_ms: int, t: int) -> None:
        out.device_ids.append(self.ids[i])
        out.payloads.append(payload)
        out.event_ms.append(event_ms)
        out.send_ms.append(t)

    def flush(self, out: Sends, i: int, t: int) -> None:
        """Nothing is held."""

    def malformed(self, i: int, payload: bytes, rng: Random) -> tuple[bytes, str]:
        return malformed_payload(payload, rng)

    def finish(self, out: Sends, end_ms: int) -> None:
        """Nothing is held."""


class Batching:
    """Per-device buffers in flat lists (see the module contract)."""

    batched = True

    def __init__(self, fleet: Fleet, seed: int) -> None:
        n, scenario = fleet.devices, fleet.scenario
        self.fleet = fleet
        self.per_message = scenario.samples_per_message
        self.ids = fleet.ids
        self.heads = [f'{{"deviceId":"{device_id}","samples":['.encode() for device_id in fleet.ids]
        self.single_heads = [f'{{"deviceId":"{device_id}",'.encode() for device_id in fleet.ids]
        self.pending: list[list[bytes]] = [[] for _ in range(n)]
        self.pending_ev: list[list[int]] = [[] for _ in range(n)]
        # samples that fill the next message: the first ones are shorter, spread over the devices, so
        # that the fleet's messages spread over the ticks instead of all leaving every N-th one
        self.quota = [1 + i * self.per_message // n for i in range(n)]
        self.offline_from = [0] * n
        self.offline_until = [0] * n
        self._plan_offline(Random(f"offline-{seed}"))
        # the firmware's memory: the latest heart rate and since when, brisk movement, exercise
        self.last_hr = [-1] * n
        self.same_since = [0] * n
        self.brisk_at = [0] * n
        self.brisk_since = [0] * n
        self.moving_until = [0] * n
        self.brisk_steps = max(1, round(Firmware.BRISK_STEPS_PER_MIN * fleet.interval_ms / MS_PER_MINUTE))

    def _plan_offline(self, rng: Random) -> None:
        fleet, scenario = self.fleet, self.fleet.scenario
        latest_start = fleet.end_ms - OFFLINE_MARGIN_MS - scenario.offline_ms
        if scenario.offline_share <= 0 or latest_start < fleet.start_ms:
            return
        for i in sorted(rng.sample(range(fleet.devices), round(scenario.offline_share * fleet.devices))):
            start = rng.randint(fleet.start_ms, latest_start)
            self.offline_from[i], self.offline_until[i] = start, start + scenario.offline_ms

    def push(self, out: Sends, i: int, payload: bytes, event_ms: int, t: int) -> None:
        self.pending[i].append(payload)
        self.pending_ev[i].append(event_ms)
        if len(self.pending[i]) >= self.quota[i]:
            self.flush(out, i, t)

    def flush(self, out: Sends, i: int, t: int) -> None:
        until = self.offline_until[i]
        if until:
            if t < until:
                if t >= self.offline_from[i]:
                    return  # offline: keep buffering
            else:
                self._reconnected(i)
        samples, events = self.pending[i], self.pending_ev[i]
        if not samples:
            return
        n, device_id = self.per_message, self.ids[i]
        for low in range(0, len(samples), n):
            chunk = samples[low : low + n]
            out.device_ids.append(device_id)
            out.payloads.append(chunk[0] if n == 1 else self.heads[i] + b",".join(chunk) + b"]}")
            out.event_ms.append(events[low + len(chunk) - 1])
            out.send_ms.append(t)
        self.fleet.counts.samples_sent += len(samples)
        self.quota[i] = n
        samples.clear()
        events.clear()

    def _reconnected(self, i: int) -> None:
        fleet = self.fleet
        skew = fleet.skew[i]
        start, end = self.offline_from[i] + skew, self.offline_until[i] + skew
        fleet.truth.append(TruthEntry("fault", fleet.ids[i], OFFLINE_FAULT, start, end))
        fleet.counts.offline += 1
        self.offline_until[i] = 0

    def malformed(self, i: int, payload: bytes, rng: Random) -> tuple[bytes, str]:
        """The same draws as for the single-sample payload (so the ground truth does not change with
        batching); in a batch, a stand-in that only this sample's decoding rejects."""
        if self.per_message == 1:
            return malformed_payload(payload, rng)
        head = self.single_heads[i]
        broken, variant = malformed_payload(head + payload[1:], rng)
        return malformed_sample(broken, variant, len(head)), variant

    def finish(self, out: Sends, end_ms: int) -> None:
        for i in range(self.fleet.devices):
            if self.pending[i]:
                self.flush(out, i, end_ms)  # every offline window ended before the run did
