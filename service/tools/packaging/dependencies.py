"""The third-party packages the handler needs, installed for the Lambda platform by pip.

What is installed: the distributions behind the handler's third-party imports, minus what the Lambda
Python runtime already provides (boto3, botocore and their dependencies) unless asked to bundle it,
plus what those distributions require. Which versions: exactly those of ``requirements/runtime.lock``
(the versions the tests, the image and the package all use), with their hashes, so a build does not
change when PyPI publishes a release. Wheels only, for
``manylinux2014`` on the target architecture and CPython version: pip never builds from source here.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.tools.packaging.lock import RUNTIME_LOCK, LockError, canonical, closure, read_lock

PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore"})


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


def install(
    requirements: Iterable[str],
    target: Path,
    *,
    python_version: str,
    architecture: Architecture,
    work_dir: Path,
    lock: Path = RUNTIME_LOCK,
) -> list[Installed]:
    """Install ``requirements`` and what they need, at the versions and hashes of ``lock``, into
    ``target`` for CPython ``python_version`` on ``architecture``; returns what landed there, sorted
    by name."""
    try:
        entries = closure(read_lock(lock), requirements)
    except LockError as exc:
        raise DependencyError(str(exc)) from exc
    locked = work_dir / "requirements.txt"
    locked.write_text("".join(entry.requirement_line() + "\n" for entry in entries))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-warn-script-location",
        "--require-hashes",
        "--no-deps",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--platform",
        architecture.platform_tag,
        "--target",
        str(target),
        "--requirement",
        str(locked),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DependencyError(f"could not run pip: {exc}") from exc
    if result.returncode != 0:
        detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        raise DependencyError(
            f"pip could not install {', '.join(requirements)} for CPython {python_version} on "
            f"{architecture} from {lock} (exit {result.returncode}; is PyPI reachable?):\n{detail}"
        )
    return installed_in(target)


def installed_in(target: Path) -> list[Installed]:
    found = [
        Installed(canonical(dist.metadata["Name"]), dist.version)
        for dist in importlib.metadata.distributions(path=[str(target)])
    ]
    return sorted(found, key=lambda item: item.name)
