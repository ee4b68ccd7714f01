"""The ``vitalstream`` command line: one parser, one module per subcommand.

Each subcommand module provides ``NAME``, ``HELP``, ``configure(parser)`` and ``run(args) -> int``
(see ``Command``); this file only wires them. Command modules keep heavy imports (AWS clients,
emulators) inside ``run`` so that ``vitalstream --help`` and the other commands stay fast.

``main`` returns the process exit code instead of raising ``SystemExit``: 0 success, 1 failure,
2 usage errors (bad flags, missing input files), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from service import bridge, local, package_lambda, provision, replay, score, serverless, simulate
from service.runtime.consumer import command as consume
from service.tools.demo import command as demo


class Command(Protocol):
    """The shape of a subcommand module."""

    NAME: str
    HELP: str

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (
    demo,
    consume,
    serverless,
    replay,
    simulate,
    score,
    provision,
    package_lambda,
    local,
    bridge,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitalstream", description="Stream processor for wearable health telemetry on AWS Kinesis."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen subcommand, return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors and --help; report the code instead
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("vitalstream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (e.g. piped into ``head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
