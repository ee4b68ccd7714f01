"""``vitalstream provision``: deploy ``infra/template.yaml`` to real AWS or an emulator, verify every
resource through its own API, print the outputs and the ``export VITALSTREAM_...`` environment.

Exit codes: 0 success (also when nothing changed), 1 provisioning failed (the message names the
parameter, resource or call), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack-name", default="vitalstream", help="CloudFormation stack name")
    parser.add_argument("--endpoint-url", default=None, help="AWS API endpoint (an emulator); default: AWS")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter, repeatable (e.g. --param ShardCount=2)",
    )
    parser.add_argument(
        "--lambda-zip",
        type=Path,
        default=None,
        help=(
            "Lambda deployment package (build it with vitalstream package-lambda; its architecture "
            "becomes the Architecture parameter); without it the function and its mapping are not deployed"
        ),
    )


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict; raises ``ValueError`` naming a malformed pair."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r} is not KEY=VALUE")
        params[key] = value
    return params


def run(args: argparse.Namespace) -> int:
    from service.tools.provisioning import ProvisionError, provision_stack  # noqa: PLC0415 - keeps --help fast

    try:
        params = parse_params(args.param)
    except ValueError as exc:
        print(f"vitalstream provision: {exc}", file=sys.stderr)
        return 2
    if args.lambda_zip is not None and not args.lambda_zip.is_file():
        print(f"vitalstream provision: --lambda-zip {args.lambda_zip} is not a file", file=sys.stderr)
        return 2
    try:
        result = provision_stack(
            args.stack_name,
            endpoint_url=args.endpoint_url,
            region=args.region,
            parameters=params,
            lambda_zip=args.lambda_zip,
        )
    except ProvisionError as exc:
        print(f"vitalstream provision: {exc}", file=sys.stderr)
        return 1
    print(f"stack {result.stack_name}: {result.stack}")
    for change in result.changes:
        print(f"  changed {change}")
    if not result.changed:
        print("no changes")
    for warning in result.warnings:
        print(f"  warning {warning}")
    print("outputs:")
    for key, value in result.outputs.items():
        print(f"  {key} = {value}")
    print("environment:")
    for line in result.export_lines():
        print(line)
    return 0
