"""Per-device detector state and its compact, versioned snapshot form.

A snapshot restores to identical behaviour: ``decode_state(encode_state(s))`` equals ``s`` field for
field, so a lease that moves to another replica (or a Lambda container that loads the state from
DynamoDB) continues an episode in progress without losing or re-raising it.

Versions: ``decode_state`` reads every version up to ``STATE_VERSION`` and returns the current one.
Fields are positional (msgpack arrays) and only ever appended, so an older snapshot decodes with the
new fields at their defaults, then its migration fills them in:

- 1 → 2: v1 had no activity context beyond ``last_moving_ms`` (then named ``last_active_ms``), after
  which it granted the whole recovery window. The migration carries exactly that: activity ends at
  ``last_moving_ms`` with ``FULL_RECOVERY`` earned, so a device restored in the middle of a
  post-exercise recovery stays in it until v1 would have let it go, under the deployment's own
  ``recovery_ms``.
"""

from __future__ import annotations

import msgspec

from service.core.anomalies import AnomalyType

STATE_VERSION = 2
NONE = -1  # "no such moment" for event-time fields (epoch ms are never negative here)
FULL_RECOVERY = 1 << 40  # ms of recovery "earned" that any recovery_ms cap cuts to the cap

# The order of ``DeviceState.episodes``; append only, so older snapshots stay readable.
EPISODE_TYPES: tuple[AnomalyType, ...] = (
    AnomalyType.TACHYCARDIA,
    AnomalyType.BRADYCARDIA,
    AnomalyType.LOW_SPO2,
    AnomalyType.HR_SPIKE,
    AnomalyType.SENSOR_FAULT,
    AnomalyType.HIGH_HEART_RATE,
)


class Episode(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One anomaly type's episode bookkeeping, in event-time epoch ms. Immutable: a step returns
    the next value (or ``self`` when nothing changed), so copying a state never copies episodes."""

    pending_since: int = NONE  # the condition has held continuously since then
    last_true: int = NONE  # the last sample at which the condition held
    active_start: int = NONE  # start of the raised episode; NONE when no episode is open

    @property
    def quiet(self) -> bool:
        return self.pending_since == NONE and self.active_start == NONE

    def observe(self, holding: bool, t: int, sustain: int, clear: int, max_gap: int) -> tuple[Episode, bool]:
        """Feed one sample; the next episode value and whether this sample raises a new episode."""
        if holding:
            since = self.pending_since
            if since == NONE or t - self.last_true > max_gap:
                since = t
            return self.advance(since, t, sustain, clear)
        return self.advance(NONE, t, sustain, clear)

    def advance(self, since: int, t: int, sustain: int, clear: int) -> tuple[Episode, bool]:
        """Like ``observe`` for a condition whose start the caller tracks (``since``, or NONE)."""
        start = self.active_start
        if since != NONE:
            if start == NONE and t - since >= sustain:
                return Episode(since, t, since), True
            return Episode(since, t, start), False
        if start != NONE and t - self.last_true >= clear:
            start = NONE
        if start == self.active_start and self.pending_since == NONE:
            return self, False
        return Episode(NONE, self.last_true, start), False


QUIET = Episode()


_QUIET_EPISODES: tuple[Episode, ...] = tuple(QUIET for _ in EPISODE_TYPES)


class DeviceState(msgspec.Struct, array_like=True, gc=False):
    """Everything the core remembers about one device between batches."""

    version: int = STATE_VERSION
    last_shard: str = ""
    last_sequence: str = ""  # Kinesis sequence number of the last applied record (decimal string)
    last_sub_sequence: int = 0
    last_event_ms: int = NONE
    device_seq: int = NONE  # highest device ``seq`` seen
    seq_window: int = 0  # bit i set: device seq (device_seq - 1 - i) was seen
    baseline_mean: float = 0.0
    baseline_var: float = 0.0
    baseline_samples: int = 0
    last_moving_ms: int = NONE  # the last sample whose own cadence reached rest_steps_per_min
    flat_value: int = NONE
    flat_since: int = NONE
    episodes: tuple[Episode, ...] = _QUIET_EPISODES
    # version 2: sustained activity and the recovery it earned (see service.core.activity)
    cadence_spm: float = 0.0  # exponentially weighted cadence, steps per minute
    active_until_ms: int = NONE  # the last sample at which the wearer was active (sustained)
    recovery_earned_ms: int = 0  # recovery earned by the bout that ended (or goes on) at active_until_ms

    def clone(self) -> DeviceState:
        return msgspec.structs.replace(self)  # shallow is whole: episodes are immutable

    def restart_clock(self) -> None:
        """Forget everything measured in event time (the clock it was measured on is gone): episodes,
        the flat-reading run, activity and the last sample's time. The resting baseline, in bpm,
        stays; the stream position and the device counter are the caller's."""
        self.last_event_ms = self.last_moving_ms = self.flat_value = self.flat_since = NONE
        self.active_until_ms, self.cadence_spm, self.recovery_earned_ms = NONE, 0.0, 0
        self.episodes = _QUIET_EPISODES

    def open_anomalies(self) -> tuple[AnomalyType, ...]:
        return tuple(
            kind for kind, ep in zip(EPISODE_TYPES, self.episodes, strict=True) if ep.active_start != NONE
        )


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(DeviceState)


class StateFormatError(ValueError):
    """A stored snapshot cannot be read by this version."""


def encode_state(state: DeviceState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(blob: bytes) -> DeviceState:
    """The current-version state a snapshot of any version up to ``STATE_VERSION`` restores to
    (migrated, see the module docstring). Raises ``StateFormatError`` for bytes that are not a
    snapshot or a snapshot from a newer version."""
    try:
        state = _DECODER.decode(blob)
    except msgspec.DecodeError as exc:
        raise StateFormatError(str(exc)) from exc
    if state.version > STATE_VERSION:
        raise StateFormatError(f"snapshot version {state.version} is newer than {STATE_VERSION}")
    if state.version < 2 and state.last_moving_ms != NONE:
        state.active_until_ms, state.recovery_earned_ms = state.last_moving_ms, FULL_RECOVERY
    state.version = STATE_VERSION
    missing = len(EPISODE_TYPES) - len(state.episodes)
    if missing > 0:
        state.episodes = state.episodes + (QUIET,) * missing
    return state
