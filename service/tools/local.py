"""``vitalstream local up``: the embedded AWS emulator with the stack provisioned, for other terminals.

Prints the endpoint and an ``export ...`` block (credentials for the emulator, region and every
``VITALSTREAM_`` setting), then a line ``ready`` and waits; Ctrl-C or SIGTERM stops the emulator
and exits 0. Exit 1 when provisioning fails (the emulator is stopped first).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from service.tools.emulator import Engine, emulator_missing


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the emulator, provision, print the environment, wait")
    up.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    up.add_argument(
        "--emulator",
        choices=[engine.value for engine in Engine],
        default=Engine.MINISTACK.value,
        help="which emulator serves the AWS APIs (default ministack; see docs/performance.md)",
    )
    up.add_argument("--no-provision", action="store_true", help="start the emulator only")
    up.add_argument("--stack-name", default="vitalstream")
    up.add_argument("--region", default="us-east-1")
    up.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter")


def run(args: argparse.Namespace) -> int:
    from service.tools.emulator import EMULATOR_KEY, EmbeddedAws, use_emulator_credentials  # noqa: PLC0415
    from service.tools.provision import parse_params  # noqa: PLC0415
    from service.tools.provisioning import ProvisionError, provision_stack  # noqa: PLC0415

    try:
        params = parse_params(args.param)
    except ValueError as exc:
        print(f"vitalstream local up: {exc}", file=sys.stderr)
        return 2
    missing = emulator_missing(Engine(args.emulator))
    if missing is not None:
        print(f"vitalstream local up: {missing}", file=sys.stderr)
        return 2
    stop = threading.Event()
    restore = _on_signals(stop)
    use_emulator_credentials()
    emulator = EmbeddedAws(port=args.port, engine=Engine(args.emulator))
    try:
        endpoint = emulator.start()
        print(f"endpoint {endpoint} ({emulator.engine})", flush=True)
        environment = {
            "AWS_ACCESS_KEY_ID": EMULATOR_KEY,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_KEY,
            "AWS_DEFAULT_REGION": args.region,
            "VITALSTREAM_REGION": args.region,
            "VITALSTREAM_ENDPOINT_URL": endpoint,
        }
        if not args.no_provision:
            result = provision_stack(
                args.stack_name, endpoint_url=endpoint, region=args.region, parameters=params
            )
            print(f"stack {result.stack_name}: {result.stack}, {len(result.changes)} emulator gaps filled")
            environment.update(result.environment)
        for key, value in environment.items():
            print(f"export {key}={value}")
        print("ready (Ctrl-C to stop)", flush=True)
        while not stop.wait(0.5):
            pass
    except ProvisionError as exc:
        print(f"vitalstream local up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        restore()
    print("stopped", flush=True)
    return 0


def _on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set ``stop`` (main thread only); returns a function restoring them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
