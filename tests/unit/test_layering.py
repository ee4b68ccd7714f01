"""The tree says what ships, and import-linter (``pyproject.toml``'s contracts, run by ``dev.py lint``)
holds it to that over the real import graph. These tests show the contracts bite, and that the CLI
really loads only the command it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env=os.environ | {"PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages the contracts cover, with the project's configuration."""
    for name in ("service", "lambda_shim", "simulator"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contracts_hold_for_the_tree_as_it_is(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("service/runtime/pipeline.py", "import simulator.scenario", "What ships"),
        ("service/runtime/consumer/worker.py", "from service.tools import replay", "What ships"),
        ("lambda_shim/handler.py", "import service.tools.emulator", "What ships"),
        ("service/core/batch.py", "import boto3", "The core is pure"),
        ("service/core/detection.py", "import time", "The core is pure"),
        ("service/cli/__init__.py", "import service.runtime.bridge", "The CLI registry"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree: Path, module: str, line: str, contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")

    result = lint_imports(tree)

    assert result.returncode != 0
    broken = [text for text in result.stdout.split("\n\n") if "BROKEN" in text]
    assert any(contract in text for text in broken), result.stdout


def test_running_consume_loads_nothing_of_the_tools_or_the_simulator() -> None:
    probe = (
        "import sys; from service.cli import main; code = main(['consume', '--help']); "
        "print(sorted(m for m in sys.modules if m.startswith(('service.tools', 'simulator'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "--stop-after" in result.stdout
