"""Activity context in event time: is the wearer at rest, and does a recent movement explain the rate?

``ActivityModel.step`` advances one device's activity fields by one in-order sample and classifies
the wearer at that sample. Three notions, with the settings of ``DetectionConfig``:

- *Moving*: the sample's own cadence reaches ``rest_steps_per_min``. A movement explains a heart-rate
  departure from the resting baseline that starts within ``movement_hold_ms`` after it (standing up
  or walking to the door raises the rate for seconds), so such a departure starts no HR_SPIKE. It
  does not make the wearer active: a few steps are no reason to miss a resting heart rate of 140.
- *Active*: movement sustained over a window. The cadence is exponentially weighted (half-life
  ``activity_half_life_ms``); the wearer is active while it is at or above ``active_steps_per_min``.
  A burst of a dozen steps in one sample lifts it by about 8 steps/min at the default half-life, a
  walk (95-120 steps/min) or a run (150-180) crosses the default threshold within a minute.
- *Recovering*: after activity, the heart rate stays up for as long as the bout was long and hard.
  Every active millisecond earns ``recovery_ratio`` · cadence / ``active_steps_per_min`` ms of
  recovery, and a bout earns at most ``recovery_ms``: a 2-minute brisk walk earns about half a
  minute, a 10-minute run the whole cap, steps to the door nothing. A bout that starts while the
  previous one's recovery runs adds to it; one that starts at rest begins from nothing.

At rest = neither active nor recovering. TACHYCARDIA, HR_SPIKE and baseline learning need rest.
"""

from __future__ import annotations

import math
from enum import IntEnum

from service.core.anomalies import DetectionConfig
from service.core.state import FULL_RECOVERY, NONE, DeviceState

_MS_PER_MIN = 60_000


class ActivityContext(IntEnum):
    """The wearer at one sample; a higher value is a stricter kind of rest."""

    ACTIVE = 0  # active, or recovering from activity
    MOVING = 1  # at rest, but a movement within movement_hold_ms explains a raised rate
    STILL = 2  # at rest and still


class ActivityModel:
    """Stateless over devices: every device's activity lives in its ``DeviceState``."""

    __slots__ = (
        "_active_spm",
        "_earn_per_spm",
        "_hold_ms",
        "_moving_steps_per_ms",
        "_neg_ln2_over_half_life",
        "_recovery_cap_ms",
    )

    def __init__(self, config: DetectionConfig) -> None:
        self._neg_ln2_over_half_life = -math.log(2) / config.activity_half_life_ms
        self._moving_steps_per_ms = config.rest_steps_per_min / _MS_PER_MIN
        self._active_spm = config.active_steps_per_min
        self._earn_per_spm = config.recovery_ratio / config.active_steps_per_min
        self._recovery_cap_ms = config.recovery_ms
        self._hold_ms = config.movement_hold_ms

    def step(self, state: DeviceState, t: int, elapsed: int, gap: int, steps: int) -> ActivityContext:
        """Advance ``state`` by the sample at ``t`` with ``steps`` since the previous one, ``elapsed``
        ms after it (uncapped: the steps of a dropout are spread over all of it) and ``gap`` ms of
        event time counted towards recovery (capped at max_gap_ms by the caller)."""
        if steps and steps >= self._moving_steps_per_ms * max(gap, 1_000):
            state.last_moving_ms = t
        previous = state.cadence_spm
        weight = 1.0 - math.exp(self._neg_ln2_over_half_life * elapsed)
        cadence = previous + weight * (steps * _MS_PER_MIN / max(elapsed, 1_000) - previous)
        state.cadence_spm = cadence
        active = self._active_spm
        if cadence >= active:
            earned = state.recovery_earned_ms
            if previous < active and not self._recovering(state, t):
                earned = 0  # a new bout, from rest
            earned += round(gap * cadence * self._earn_per_spm)
            state.recovery_earned_ms = min(earned, FULL_RECOVERY)
            state.active_until_ms = t
            return ActivityContext.ACTIVE
        if self._recovering(state, t):
            return ActivityContext.ACTIVE
        if state.last_moving_ms != NONE and t - state.last_moving_ms < self._hold_ms:
            return ActivityContext.MOVING
        return ActivityContext.STILL

    def _recovering(self, state: DeviceState, t: int) -> bool:
        until = state.active_until_ms
        return until != NONE and t - until < min(state.recovery_earned_ms, self._recovery_cap_ms)
