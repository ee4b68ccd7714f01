"""The ``vitalstream`` command line: a lazy registry of subcommands, one module each.

``COMMANDS`` names each subcommand, its one-line help and the module that implements it; a module
provides ``configure(parser)`` and ``run(args) -> int`` (see ``Command``). Only the module of the
command being run is imported, so ``vitalstream consume`` loads the consumer and nothing of the
tools (import-linter's ``cli`` contract keeps this file from importing any command module). A
command whose module is not installed (the container image ships the runtime alone) exits 2 and
says so.

``main`` returns the process exit code instead of raising ``SystemExit``: 0 success, 1 failure,
2 usage errors (bad flags, missing input files), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast


class Command(Protocol):
    """The shape of a subcommand module."""

    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True, slots=True)
class Entry:
    module: str
    help: str


COMMANDS: dict[str, Entry] = {
    "demo": Entry(
        "service.tools.demo.command",
        "run the whole pipeline on the embedded AWS emulator with a simulated fleet, then report",
    ),
    "consume": Entry(
        "service.cli.consume",
        "consume the stream's shards with leases shared by every replica (Kubernetes mode)",
    ),
    "serverless": Entry(
        "service.tools.serverless",
        "run the local event source mapping and the Lambda shim against the configured stream (Lambda mode)",
    ),
    "replay": Entry(
        "service.tools.replay",
        "run the core offline over a telemetry JSON Lines file: processed / alerts / rejects JSONL",
    ),
    "simulate": Entry(
        "service.tools.simulate",
        "simulate a wearable fleet (labelled anomalies, stream faults) into a file or a publisher",
    ),
    "score": Entry(
        "service.tools.score",
        "score alerts against ground truth: per-type precision, recall and detection delay",
    ),
    "provision": Entry(
        "service.tools.provision",
        "Deploy the CloudFormation stack (real AWS or an emulator) and verify every resource.",
    ),
    "cost": Entry(
        "service.tools.cost.command",
        "the monthly bill of a deployment, every line itemised (IoT Core, Kinesis, Lambda or pods, sinks)",
    ),
    "package-lambda": Entry(
        "service.tools.package_lambda",
        "build the Lambda deployment zip (handler, runtime modules, dependencies for the target)",
    ),
    "flush-handoffs": Entry(
        "service.tools.flush_handoffs",
        "write every shard's Lambda window handoff to the device table (after switching the mapping off)",
    ),
    "local": Entry(
        "service.tools.local",
        "Run AWS locally: `local up` starts the embedded emulator and provisions the stack.",
    ),
    "bridge": Entry(
        "service.cli.bridge",
        "forward MQTT telemetry ($aws/rules/RULE/wearables/+/telemetry) to Kinesis, as the IoT rule does",
    ),
}


class NotInstalledError(Exception):
    """The command's module is not part of this installation."""


def load(name: str) -> Command:
    """The module of command ``name``; ``NotInstalledError`` when it is not installed here."""
    module = COMMANDS[name].module
    try:
        return cast(Command, importlib.import_module(module))
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise NotInstalledError(f"{name} ({module}) is not installed here") from exc
        raise


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line (every command configured), or with ``only`` just that command's
    flags: the others are listed with their help, their modules left unimported."""
    parser = argparse.ArgumentParser(
        prog="vitalstream", description="Stream processor for wearable health telemetry on AWS Kinesis."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        sub = subparsers.add_parser(name, help=entry.help, description=entry.help)
        if only is None or name == only:
            command = load(name)
            command.configure(sub)
            sub.set_defaults(run=command.run)
    return parser


def chosen(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first argument that is not an option."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the chosen subcommand, return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    name = chosen(arguments)
    try:
        parser = build_parser(only=name or "")
    except NotInstalledError as exc:
        print(
            f"vitalstream: {exc}: it is a development tool; install the project with its tools",
            file=sys.stderr,
        )
        return 2
    try:
        args = parser.parse_args(arguments)
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
