"""``vitalstream-lambda.json`` at the root of the package: what it was built for.

``vitalstream provision --lambda-zip`` reads it to deploy the function with the architecture the
dependencies were installed for, and refuses a package built for another Python than the template's
``Runtime``: a mismatch would only show as an ``ImportError`` on the first invocation.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "vitalstream-lambda.json"
HANDLER = "lambda_shim.handler.handler"


class ManifestError(ValueError):
    """The package's manifest is unreadable or incomplete."""


@dataclass(frozen=True)
class PackageManifest:
    runtime: str  # Lambda's runtime identifier, e.g. ``python3.12``
    architecture: str  # ``x86_64`` or ``arm64``
    handler: str = HANDLER
    dependencies: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {
            "architecture": self.architecture,
            "dependencies": dict(sorted(self.dependencies.items())),
            "handler": self.handler,
            "runtime": self.runtime,
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def read_manifest(package: Path) -> PackageManifest | None:
    """The manifest of the zip at ``package``; None when it has none (a package built elsewhere)."""
    try:
        with zipfile.ZipFile(package) as archive:
            if MANIFEST_NAME not in archive.namelist():
                return None
            body = json.loads(archive.read(MANIFEST_NAME))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{package}: {exc}") from exc
    try:
        return PackageManifest(
            runtime=str(body["runtime"]),
            architecture=str(body["architecture"]),
            handler=str(body.get("handler", HANDLER)),
            dependencies={str(k): str(v) for k, v in dict(body.get("dependencies", {})).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{package}: {MANIFEST_NAME} lacks {exc}") from exc
