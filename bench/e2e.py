"""End to end on the embedded stack: the largest fleet one machine sustains with zero loss.

    python bench/e2e.py                          # 50, 100, 200, 400 devices, 60 s each
    python bench/e2e.py --devices 100 200 --duration 30s

Each size runs the whole demo pipeline (emulator, provisioned stack, fleet at 1 event / 5 s per
device in real time, local serverless processing) in a fresh emulator, and prints events/s, loss,
duplicate effects and latency from device timestamp to every sink's acknowledgement. A size is
"sustained" when nothing is lost and processing kept pace: the run ended within 10 % of the fleet's
own duration. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.demo.session import DemoSession
from simulator.scenario import parse_duration_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    duration_ms = parse_duration_ms(args.duration)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    print(f"fleet {args.duration} per size, 1 event / 5 s per device, {args.shards} shards, lambda mode")
    print(
        f"{'devices':>8} {'events/s':>9} {'sent':>7} {'lost':>5} {'dups':>5} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'run s':>6}  sustained"
    )
    best = 0
    for devices in args.devices:
        with DemoSession(args.shards, log=lambda _: None) as session:
            report = session.run(
                devices=devices, duration_ms=duration_ms, seed=1, share=0.02, batch_size=500, mode="lambda"
            )
        kept_pace = report.duration_s <= 1.1 * duration_ms / 1000
        sustained = report.lost == 0 and report.duplicate_effects == 0 and kept_pace
        best = devices if sustained else best
        lat = report.latency
        print(
            f"{devices:>8} {report.sent / report.duration_s:>9.0f} {report.sent:>7} {report.lost:>5} "
            f"{report.duplicate_effects:>5} {lat.p50_ms or 0:>8.0f} {lat.p95_ms or 0:>8.0f} "
            f"{lat.p99_ms or 0:>8.0f} "
            f"{report.duration_s:>6.0f}  {'yes' if sustained else 'no'}",
            flush=True,
        )
    print(f"largest sustained fleet: {best} devices ({best / 5:.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
