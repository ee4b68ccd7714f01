"""Throughput of the fleet simulator on one core: events generated and JSON-encoded per second.

    python bench/simulator.py                               # 10,000 devices x 120 ticks, best of 3
    python bench/simulator.py --devices 100000 --ticks 24   # the 100K-device fleet itself
    python bench/simulator.py --samples-per-message 12      # devices that batch (simulator.uplink)

Each repetition builds a fresh ``Fleet`` (default scenario: activity, anomalies and stream faults
at their default rates) and drains ``ticks()``: every sample is generated and encoded to its JSON
payload, as ``vitalstream simulate`` does before writing or publishing (with
``--samples-per-message N``, also buffered and joined into batched messages; "events" stay samples).
Fleet construction is
timed separately. The required rate is 100,000 devices at one event per 5 s = 20,000 events/s;
the headroom is the measured rate over it. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.core.telemetry import parse_rfc3339_ms
from simulator.fleet import Fleet
from simulator.scenario import Scenario

REQUIRED_DEVICES = 100_000
REQUIRED_INTERVAL_S = 5


def run_once(devices: int, ticks: int, seed: int, per_message: int = 1) -> tuple[float, float, int, int]:
    """(build seconds, generate seconds, samples sent, payload bytes) of one fleet."""
    start = parse_rfc3339_ms("2026-11-28T00:00:00Z")
    assert start is not None
    gc.collect()
    began = time.perf_counter()
    scenario = Scenario(samples_per_message=per_message)
    fleet = Fleet(devices, seed, start, start + ticks * 5_000, scenario=scenario)
    built = time.perf_counter()
    size = 0
    for sends in fleet.ticks():
        size += sum(map(len, sends.payloads))
    return built - began, time.perf_counter() - built, fleet.counts.samples_sent, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=120, help="intervals of 5 s to generate")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples-per-message", type=int, default=1, metavar="N")
    args = parser.parse_args()

    print(f"python {platform.python_version()} on {platform.machine()}, one core")
    best: tuple[float, float, int, int] | None = None
    for _ in range(args.repeat):
        result = run_once(args.devices, args.ticks, args.seed, args.samples_per_message)
        if best is None or result[1] < best[1]:
            best = result
    assert best is not None
    build_s, generate_s, sent, size = best
    rate = sent / generate_s
    required = REQUIRED_DEVICES / REQUIRED_INTERVAL_S
    print(
        f"fleet      {args.devices:,} devices x {args.ticks} ticks, {args.samples_per_message} sample(s) "
        f"per message (best of {args.repeat})"
    )
    print(f"build      {build_s:.2f} s")
    print(f"generated  {sent:,} events, {size / sent:.0f} bytes of payload each, in {generate_s:.2f} s")
    print(f"rate       {rate:,.0f} events/s generated + encoded ({rate * size / sent / 1e6:.1f} MB/s)")
    print(
        f"required   {required:,.0f} events/s ({REQUIRED_DEVICES:,} devices, "
        f"1 event / {REQUIRED_INTERVAL_S} s) → headroom x{rate / required:.1f}"
    )


if __name__ == "__main__":
    main()
