"""The import contract: ``service/core`` does no I/O, reads no clock and no environment."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "core"
FORBIDDEN_MODULES = {
    "aioboto3",
    "aiobotocore",
    "asyncio",
    "boto3",
    "botocore",
    "http",
    "logging",
    "os",
    "prometheus_client",
    "pydantic_settings",
    "random",
    "requests",
    "secrets",
    "socket",
    "subprocess",
    "sys",
    "threading",
    "time",
    "urllib",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "getenv", "urandom", "uuid1", "uuid4", "open"}


def _core_files() -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    assert files, f"no sources under {CORE}"
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])

    assert imported.isdisjoint(FORBIDDEN_MODULES), imported & FORBIDDEN_MODULES


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_reads_no_clock_or_environment(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    called = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }

    assert called.isdisjoint(FORBIDDEN_CALLS), called & FORBIDDEN_CALLS


def test_importing_the_core_loads_no_io_library() -> None:
    probe = (
        "import sys; before = set(sys.modules); import service.core; "
        f"forbidden = {sorted(FORBIDDEN_MODULES)!r}; "
        "bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in forbidden); "
        "print(','.join(bad))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "", f"importing service.core loaded {loaded}"
