"""``vitalstream consume``: the long-lived shard consumer (Kubernetes mode).

Configuration comes from ``VITALSTREAM_*`` environment variables (``ConsumerSettings``), the same
names the Helm chart sets; the flags only bound a run (for tests, demos and benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from service.cli.args import duration_ms


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stop-after",
        type=duration_ms(1_000),
        default=None,
        metavar="DURATION",
        help="stop gracefully after this long, e.g. 30s (default: run until SIGTERM)",
    )


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415

    from service.runtime.config import ConsumerSettings  # noqa: PLC0415

    try:
        settings = ConsumerSettings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "VITALSTREAM_" + "__".join(str(part) for part in error["loc"]).upper()
            print(f"vitalstream consume: {name}: {error['msg']}", file=sys.stderr)
        return 2
    from service.runtime.consumer.app import consume  # noqa: PLC0415 - heavy imports only when running

    stop_after = None if args.stop_after is None else args.stop_after / 1000
    return asyncio.run(consume(settings, stop_after))
