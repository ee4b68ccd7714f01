"""Build the Lambda deployment package: handler, the runtime part of ``service``, dependencies.

Contract: the zip holds (1) the import closure of ``lambda_shim`` (see ``sources``), (2) the
third-party distributions it needs that the Lambda runtime does not provide, installed as wheels
for the target CPython and architecture at this environment's versions (see ``dependencies``), and
(3) ``vitalstream-lambda.json`` naming the runtime, architecture, handler and dependency versions.
Two builds from the same sources and environment are byte-identical (see ``archive``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from service.tools.packaging.archive import runtime_files, write_zip, zip_date_time
from service.tools.packaging.dependencies import (
    Architecture,
    DependencyError,
    Installed,
    install,
    required_distributions,
)
from service.tools.packaging.manifest import MANIFEST_NAME, PackageManifest
from service.tools.packaging.sources import SourceError, runtime_sources

# The template's ProcessorFunction (Runtime: python3.12, Architectures: x86_64); a test keeps them in step.
PYTHON_VERSION = "3.12"
ARCHITECTURE = Architecture.X86_64
MIN_PYTHON = (3, 11)  # pyproject's requires-python
DEFAULT_OUT = Path("dist") / "vitalstream-lambda.zip"
_VERSION = re.compile(r"3\.(\d{1,2})")


class PackagingError(RuntimeError):
    """The package could not be built; the message names the step."""


@dataclass(frozen=True)
class LambdaPackage:
    path: Path
    sha256: str
    zip_bytes: int
    unpacked_bytes: int
    files: int
    manifest: PackageManifest
    dependencies: tuple[Installed, ...]


def parse_python_version(text: str) -> str:
    """``3.N`` with N at least pyproject's minimum; raises ``ValueError`` otherwise."""
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected 3.N (e.g. {PYTHON_VERSION}), got {text!r}")
    if (3, int(match.group(1))) < MIN_PYTHON:
        raise ValueError(f"VitalStream needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, got {text}")
    return f"3.{int(match.group(1))}"


def build_lambda_package(
    out: Path,
    *,
    python_version: str = PYTHON_VERSION,
    architecture: Architecture = ARCHITECTURE,
    bundle_boto3: bool = False,
    source_date_epoch: str | None = None,
) -> LambdaPackage:
    """Build the package at ``out`` (replaced when present; parent directories are created)."""
    try:
        date_time = zip_date_time(source_date_epoch)
        sources = runtime_sources()
        requirements = required_distributions(sources.third_party, bundle_boto3=bundle_boto3)
    except (ValueError, SourceError, DependencyError) as exc:
        raise PackagingError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="vitalstream-lambda-") as work:
        work_dir = Path(work)
        target = work_dir / "site"
        try:
            installed = install(
                requirements,
                target,
                python_version=python_version,
                architecture=architecture,
                work_dir=work_dir,
            )
        except DependencyError as exc:
            raise PackagingError(str(exc)) from exc
        manifest = PackageManifest(
            runtime=f"python{python_version}",
            architecture=architecture.value,
            dependencies={item.name: item.version for item in installed},
        )
        (work_dir / MANIFEST_NAME).write_bytes(manifest.to_json())
        entries = [(name, sources.root / name) for name in sources.files]
        entries += list(runtime_files(target))
        entries.append((MANIFEST_NAME, work_dir / MANIFEST_NAME))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            unpacked = write_zip(out, entries, date_time)
        except (OSError, ValueError) as exc:
            raise PackagingError(f"writing {out}: {exc}") from exc
    data = out.read_bytes()
    return LambdaPackage(
        path=out,
        sha256=hashlib.sha256(data).hexdigest(),
        zip_bytes=len(data),
        unpacked_bytes=unpacked,
        files=len(entries),
        manifest=manifest,
        dependencies=tuple(installed),
    )
