"""A fleet scenario that shows every kind of behaviour within a short run.

The default scenario spreads episodes over hours; a demo lasts a minute or a few. Here devices have
rested before the run starts, episodes are as short as the detector allows with a margin, and rates
are set so that about ``share`` of the fleet has each kind of episode within the run. Which types
can fit depends on the run: HR_SPIKE needs a warm baseline (3 min), a no-reading fault 60 s of
zeros, a stuck reading 5 min of one value.
"""

from __future__ import annotations

from simulator.scenario import MS_PER_HOUR, SHORT_DURATIONS, Scenario, Segment

SECOND = 1_000


def demo_scenario(duration_ms: int, share: float = 0.01, samples_per_message: int = 1) -> Scenario:
    """``share`` of the devices per anomaly type over the run (segments need room to fit, so the
    hazard is spread over the part of the run where one can still start); devices send
    ``samples_per_message`` samples a message (``simulator.uplink``)."""
    per_hour = share * MS_PER_HOUR / max(duration_ms // 3, 20 * SECOND)
    rates = {segment: per_hour for segment in SHORT_DURATIONS}
    rates[Segment.WALK] = rates[Segment.RUN] = 2 * per_hour
    rates[Segment.NO_READING] = rates[Segment.STUCK_READING] = per_hour / 2
    rates[Segment.DROPOUT] = rates[Segment.RECONNECT_BURST] = per_hour / 2
    return Scenario(
        rates=rates,
        durations=dict(SHORT_DURATIONS),
        duplicate_prob=0.002,
        out_of_order_prob=0.002,
        malformed_prob=0.001,
        rested_at_start=True,
        samples_per_message=samples_per_message,
    )
