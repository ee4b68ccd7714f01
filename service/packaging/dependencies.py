"""The third-party packages the handler needs, installed for the Lambda platform by pip.

What is installed: the distributions behind the handler's third-party imports, minus what the Lambda
Python runtime already provides (boto3, botocore and their dependencies) unless asked to bundle it,
plus whatever those distributions require on the target Python. Which versions: exactly those
installed in the environment running the build (the ones its tests ran against), passed to pip as
constraints, so a build does not change when PyPI publishes a release. Wheels only, for
``manylinux2014`` on the target architecture and CPython version: pip never builds from source here.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore"})
OWN_DISTRIBUTION = "vitalstream"


class Architecture(StrEnum):
    """Lambda's names for the instruction sets (the template's ``Architectures``)."""

    X86_64 = "x86_64"
    ARM64 = "arm64"

    @property
    def platform_tag(self) -> str:
        return "manylinux2014_x86_64" if self is Architecture.X86_64 else "manylinux2014_aarch64"


class DependencyError(RuntimeError):
    """pip could not install a dependency for the target (no wheel, no network, no pip)."""


@dataclass(frozen=True)
class Installed:
    """A distribution placed in the package: its canonical name and version."""

    name: str
    version: str


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def required_distributions(third_party: Iterable[str], *, bundle_boto3: bool = False) -> list[str]:
    """Canonical names of the distributions providing the top-level modules ``third_party``."""
    providers = importlib.metadata.packages_distributions()
    wanted: set[str] = set()
    for module in third_party:
        names = providers.get(module)
        if not names:
            raise DependencyError(f"no installed distribution provides module {module!r}")
        wanted.update(canonical(name) for name in names)
    if not bundle_boto3:
        wanted -= PROVIDED_BY_RUNTIME
    return sorted(wanted)


def pinned_versions() -> dict[str, str]:
    """``{canonical name: version}`` of every distribution in this environment but our own."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) != OWN_DISTRIBUTION:
            pins.setdefault(canonical(name), dist.version)
    return dict(sorted(pins.items()))


def install(
    requirements: Iterable[str],
    target: Path,
    *,
    python_version: str,
    architecture: Architecture,
    work_dir: Path,
) -> list[Installed]:
    """Install ``requirements`` (pinned to this environment's versions) into ``target`` for CPython
    ``python_version`` on ``architecture``; returns what landed there, sorted by name."""
    pins = pinned_versions()
    missing = [name for name in requirements if name not in pins]
    if missing:
        raise DependencyError(f"not installed here, so no version to pin: {', '.join(missing)}")
    constraints = work_dir / "constraints.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-script-location",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--platform",
        architecture.platform_tag,
        "--target",
        str(target),
        "--constraint",
        str(constraints),
        *(f"{name}=={pins[name]}" for name in requirements),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DependencyError(f"could not run pip: {exc}") from exc
    if result.returncode != 0:
        detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        raise DependencyError(
            f"pip could not install {', '.join(requirements)} for CPython {python_version} on "
            f"{architecture} (exit {result.returncode}; is PyPI reachable?):\n{detail}"
        )
    return installed_in(target)


def installed_in(target: Path) -> list[Installed]:
    found = [
        Installed(canonical(dist.metadata["Name"]), dist.version)
        for dist in importlib.metadata.distributions(path=[str(target)])
    ]
    return sorted(found, key=lambda item: item.name)
