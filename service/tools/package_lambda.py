"""``vitalstream package-lambda``: build the Lambda deployment zip for ``vitalstream provision``.

    vitalstream package-lambda [--out dist/vitalstream-lambda.zip] [--python-version 3.12]
                               [--architecture x86_64|arm64] [--bundle-boto3]
    vitalstream provision --lambda-zip dist/vitalstream-lambda.zip ...

Dependencies come from PyPI as wheels for the target (pip's cross-platform install), at the
versions installed where the command runs. Exit codes: 0 built, 1 the build failed (the message
names the step: pip, sources, writing), 2 usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from service.tools.packaging import (
    ARCHITECTURE,
    DEFAULT_OUT,
    PROVIDED_BY_RUNTIME,
    PYTHON_VERSION,
    Architecture,
    PackagingError,
    build_lambda_package,
    parse_python_version,
)


def _python_version(text: str) -> str:
    try:
        return parse_python_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"zip to write (replaced); default {DEFAULT_OUT}"
    )
    parser.add_argument(
        "--python-version",
        type=_python_version,
        default=PYTHON_VERSION,
        metavar="3.N",
        help=f"CPython of the Lambda runtime; default {PYTHON_VERSION}, the template's Runtime",
    )
    parser.add_argument(
        "--architecture",
        type=Architecture,
        choices=list(Architecture),
        default=ARCHITECTURE,
        help=f"Lambda architecture; default {ARCHITECTURE}, the template's default",
    )
    parser.add_argument(
        "--bundle-boto3",
        action="store_true",
        help=f"also bundle {' and '.join(sorted(PROVIDED_BY_RUNTIME))} (default: the runtime's own)",
    )


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.is_dir():
        print(f"vitalstream package-lambda: --out {out} is a directory; name the zip file", file=sys.stderr)
        return 2
    try:
        package = build_lambda_package(
            out,
            python_version=args.python_version,
            architecture=args.architecture,
            bundle_boto3=args.bundle_boto3,
            source_date_epoch=os.environ.get("SOURCE_DATE_EPOCH"),
        )
    except PackagingError as exc:
        print(f"vitalstream package-lambda: {exc}", file=sys.stderr)
        return 1
    manifest = package.manifest
    print(f"wrote {package.path}: {package.files} files, {_mib(package.zip_bytes)} zipped", end="")
    print(f" ({_mib(package.unpacked_bytes)} unzipped)")
    print(f"  sha256 {package.sha256}")
    print(f"  for {manifest.runtime} on {manifest.architecture}, handler {manifest.handler}")
    bundled = ", ".join(f"{item.name} {item.version}" for item in package.dependencies)
    print(f"  dependencies: {bundled}")
    if not args.bundle_boto3:
        print(f"  not bundled (the Lambda runtime provides them): {', '.join(sorted(PROVIDED_BY_RUNTIME))}")
    print(f"deploy with: vitalstream provision --lambda-zip {package.path} [--param Architecture=...]")
    return 0


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"
