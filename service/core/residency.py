"""Which devices leave a shard's resident state: the idle ones, decided from the records alone.

A lease owner holds every device of its shard in memory (``consumer.resident``); without a bound, a
fleet that churns (devices retired, replaced, re-registered under new ids) grows it, and every
snapshot with it, for ever. So a device whose last record *arrived* (Kinesis arrival time) ``idle_ms``
or more before the newest record of the archive file being cut leaves at that cut: it is not in the
cut's snapshot, and when it sends again it is read back from the device table, once.

The rule reads no clock: the cut points, the records in each file and their arrival times are the
same for every owner that replays the shard from a checkpoint, so every owner drops the same devices
at the same cut and writes the same snapshot. Arrival time, not event time: a device clock set in
the past (a backfill) or in the future must neither evict an active device nor keep a silent one.
A device with a record in the file being cut never leaves at that cut, whatever ``idle_ms``: its
state is newer than the snapshot before, so it could not be read back from the table exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from service.core.decode import Sample


def last_arrivals(samples: Iterable[Sample]) -> dict[str, int]:
    """Each device's latest Kinesis arrival time among ``samples``."""
    arrivals: dict[str, int] = {}
    for sample in samples:
        device_id, arrival = sample.device_id, sample.record.arrival_ms
        if arrival > arrivals.get(device_id, arrival - 1):
            arrivals[device_id] = arrival
    return arrivals


def idle_devices(
    arrivals: Mapping[str, int], as_of_ms: int, idle_ms: int, in_file: Collection[str] = ()
) -> list[str]:
    """The devices (sorted) whose last arrival is ``idle_ms`` or more before ``as_of_ms`` (the newest
    arrival in the file being cut), except those in ``in_file``; none when ``idle_ms`` is 0."""
    if idle_ms <= 0:
        return []
    return sorted(d for d, t in arrivals.items() if as_of_ms - t >= idle_ms and d not in in_file)
