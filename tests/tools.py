"""System tools the tests use: optional for a newcomer, mandatory for CI.

``require_tool`` finds a program (on ``PATH`` or at the Debian path it installs to) or, when it is
missing, skips the calling test with one line naming the Debian package that brings it. Under
``VITALSTREAM_REQUIRE_TOOLS=1`` (``.ci/run`` sets it) a missing tool fails the test instead, so CI
cannot silently skip what it promised to run.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_TOOLS = "VITALSTREAM_REQUIRE_TOOLS"


def tools_required() -> bool:
    return os.environ.get(REQUIRE_TOOLS, "") not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip with ``reason``, or fail with it when tools are required."""
    if tools_required():
        pytest.fail(f"{reason} ({REQUIRE_TOOLS} is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def find_tool(command: str, *candidates: str) -> str | None:
    for candidate in (command, *candidates):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def require_tool(command: str, package: str, *candidates: str) -> str:
    """The path of ``command`` (or of the first of ``candidates`` found), else skip or fail."""
    found = find_tool(command, *candidates)
    if found is None:
        missing(f"{command} is not installed: apt-get install -y {package}")
    assert found is not None
    return found
