"""``vitalstream demo``: embedded emulator → provisioned stack → simulated fleet → processing → report.

Processing runs in Kubernetes mode by default: ``--replicas`` ``vitalstream consume`` processes share
the shards through the DynamoDB lease table. ``--mode lambda`` runs serverless mode instead: the local
event source mapping (``service.tools.esm``) polls every shard and invokes the Lambda shim, in a worker
process per shard, with Lambda's semantics. The fleet runs in real time, so latencies are from the
devices' own timestamps to the moment every sink had acknowledged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.cli.args import duration_ms, positive_int
from service.tools.emulator import Engine, emulator_missing

DEFAULT_SAMPLES_PER_MESSAGE = 12
MAX_SAMPLES_PER_MESSAGE = 40  # the batch contract's default VITALSTREAM_MAX_SAMPLES_PER_MESSAGE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices", type=positive_int, default=2_000, help="simulated wearables (default 2000)"
    )
    parser.add_argument(
        "--duration",
        type=duration_ms(10_000),
        default="4m",
        help="fleet run time, e.g. 60s, 5m (default 4m: time for every anomaly type, HR_SPIKE's baseline "
        "takes 3 minutes to warm up)",
    )
    parser.add_argument("--shards", type=positive_int, default=2, help="Kinesis shards (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed (default 1)")
    parser.add_argument(
        "--mode",
        choices=("consumer", "lambda"),
        default="consumer",
        help="consumer: shard consumer processes with leases (default); lambda: the shim behind a local ESM",
    )
    parser.add_argument(
        "--replicas", type=positive_int, default=2, help="consumer processes in consumer mode (default 2)"
    )
    parser.add_argument("--share", type=float, default=0.04, help="share of devices per anomaly type (0.04)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=500, help="event source mapping batch size"
    )
    parser.add_argument(
        "--samples-per-message",
        type=positive_int,
        default=DEFAULT_SAMPLES_PER_MESSAGE,
        metavar="N",
        help=f"samples each device buffers per message, an abnormal one sent at once (default "
        f"{DEFAULT_SAMPLES_PER_MESSAGE}: a minute of samples, what the bill's targets assume; 1 = every "
        "sample its own message)",
    )
    parser.add_argument(
        "--emulator",
        choices=[engine.value for engine in Engine],
        default=Engine.MINISTACK.value,
        help="the embedded AWS emulator: ministack (default; bench/emulators.py says why) or moto",
    )
    parser.add_argument("--report", type=Path, help="also write the final report as JSON to this file")


def run(args: argparse.Namespace) -> int:
    if args.report is not None and args.report.is_dir():
        print(f"vitalstream demo: --report {args.report} is a directory", file=sys.stderr)
        return 2
    if not 0 < args.share <= 0.5:
        print(f"vitalstream demo: --share must be within (0, 0.5], got {args.share}", file=sys.stderr)
        return 2
    if args.samples_per_message > MAX_SAMPLES_PER_MESSAGE:
        print(
            f"vitalstream demo: --samples-per-message must be ≤ {MAX_SAMPLES_PER_MESSAGE} (the processing's "
            f"limit), got {args.samples_per_message}",
            file=sys.stderr,
        )
        return 2
    from service.tools.emulator import use_emulator_credentials  # noqa: PLC0415 - heavy imports when running

    missing = emulator_missing(Engine(args.emulator))
    if missing is not None:
        print(f"vitalstream demo: {missing}", file=sys.stderr)
        return 2
    use_emulator_credentials()
    from service.tools.demo.session import DemoSession  # noqa: PLC0415 - heavy imports only when running

    with DemoSession(args.shards, log=_say, engine=Engine(args.emulator)) as session:
        report = session.run(
            devices=args.devices,
            duration_ms=args.duration,
            seed=args.seed,
            share=args.share,
            batch_size=args.batch_size,
            mode=args.mode,
            replicas=args.replicas,
            samples_per_message=args.samples_per_message,
        )
    from service.tools.demo.report import render  # noqa: PLC0415

    print(render(report), flush=True)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_bytes(report.to_json())
        print(f"report written to {args.report}")
    return 0 if report.lost == 0 and report.duplicate_effects == 0 else 1


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
