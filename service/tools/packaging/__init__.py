"""The Lambda deployment package: what goes in, how it is made reproducible, what it was built for.

``build_lambda_package`` is the entry point used by ``vitalstream package-lambda`` and the tests;
``read_manifest`` is what ``vitalstream provision --lambda-zip`` checks before deploying.
"""

from __future__ import annotations

from service.tools.packaging.build import (
    ARCHITECTURE,
    DEFAULT_OUT,
    PYTHON_VERSION,
    LambdaPackage,
    PackagingError,
    build_lambda_package,
    parse_python_version,
)
from service.tools.packaging.dependencies import PROVIDED_BY_RUNTIME, Architecture
from service.tools.packaging.manifest import MANIFEST_NAME, ManifestError, PackageManifest, read_manifest

__all__ = [
    "ARCHITECTURE",
    "DEFAULT_OUT",
    "MANIFEST_NAME",
    "PROVIDED_BY_RUNTIME",
    "PYTHON_VERSION",
    "Architecture",
    "LambdaPackage",
    "ManifestError",
    "PackageManifest",
    "PackagingError",
    "build_lambda_package",
    "parse_python_version",
    "read_manifest",
]
