#!/usr/bin/env python3
"""Bootstrap and run VitalStream on a machine that has only python3 (standard library only).

    python3 scripts/dev.py demo            # set up .venv, then run the main job
    python3 scripts/dev.py test [ARGS...]  # set up .venv, then pytest (ARGS passed through); with no
                                           # ARGS, also the Kinesis suite on kinesis-mock (see below)
    python3 scripts/dev.py lint            # set up .venv, then ruff, mypy --strict and cfn-lint

Set-up contract: ``.venv`` is created when missing, and ``pip install -e '.[dev]'`` runs again
whenever ``pyproject.toml`` differs from the one last installed (its SHA-256 is kept in
``.venv/.vitalstream-installed``, written only after a successful install). Exit codes are the
tools' own, except that pytest's 5 (no tests collected) becomes 1: an empty run is a failure.

MiniStack (PyPI ``ministack``, pinned), the Kinesis endpoint of the enhanced fan-out tests (it serves
SubscribeToShard), gets its own venv, ``.ministack``, before ``test`` runs: it pins ``botocore`` exactly
to a release that conflicts with the one ``aioboto3`` pins, so it cannot go into ``.venv`` with the
dev extra. It binds 127.0.0.1 (``BIND_HOST``), so it needs no network namespace.

The kinesis-mock pass: kinesis-mock (npm ``kinesis-local``, pinned) binds every interface, so it and
the tests marked ``kinesis`` run inside a private network namespace (``unshare -n``, loopback only).
That needs root, ``unshare``, ``ip`` and Node.js; where one is missing the pass is skipped and the
reason printed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")
PYTHON = BIN / ("python.exe" if sys.platform == "win32" else "python")
STAMP = VENV / ".vitalstream-installed"
PYTEST_NO_TESTS = 5
KINESIS_MOCK = "kinesis-local@0.6.2"
KINESIS_MOCK_DIR = ROOT / ".kinesis-mock"
MINISTACK = "ministack==1.5.33"
MINISTACK_VENV = ROOT / ".ministack"


def run(*command: str | Path) -> int:
    print("+ " + " ".join(str(part) for part in command), flush=True)
    return subprocess.run([str(part) for part in command], cwd=ROOT, check=False).returncode


def project_hash() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create ``.venv`` and install the project into it unless it is already current."""
    pip = BIN / ("pip.exe" if sys.platform == "win32" else "pip")
    # --clear also repairs a .venv left without pip by an earlier failed creation
    if not (PYTHON.exists() and pip.exists()) and run(sys.executable, "-m", "venv", "--clear", VENV) != 0:
        sys.exit(
            "dev.py: could not create .venv; on Debian/Ubuntu install the venv module first "
            "(apt-get install python3-venv)"
        )
    wanted = project_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    steps = (
        (PYTHON, "-m", "pip", "install", "--upgrade", "pip"),
        (PYTHON, "-m", "pip", "install", "-e", ".[dev]"),
    )
    for step in steps:
        if run(*step) != 0:
            sys.exit(f"dev.py: install step failed: {' '.join(str(part) for part in step)}")
    STAMP.write_text(wanted + "\n")


def ensure_ministack() -> None:
    """Create ``.ministack`` with MiniStack in it unless the pinned version is already there."""
    stamp = MINISTACK_VENV / ".vitalstream-installed"
    if stamp.exists() and stamp.read_text().strip() == MINISTACK:
        return
    python = MINISTACK_VENV / BIN.name / PYTHON.name
    steps = (
        (sys.executable, "-m", "venv", "--clear", MINISTACK_VENV),
        (python, "-m", "pip", "install", "--upgrade", "pip"),
        (python, "-m", "pip", "install", MINISTACK),
    )
    for step in steps:
        if run(*step) != 0:
            sys.exit(f"dev.py: install step failed: {' '.join(str(part) for part in step)}")
    stamp.write_text(MINISTACK + "\n")


def demo(extra: list[str]) -> int:
    return run(BIN / "vitalstream", "demo", "--report", "out/demo-report.json", *extra)


def pytest(*args: str) -> int:
    code = run(PYTHON, "-m", "pytest", *args)
    return 1 if code == PYTEST_NO_TESTS else code


def test(extra: list[str]) -> int:
    ensure_ministack()
    code = pytest(*extra)
    if extra:  # a focused run: only what was asked for
        return code
    return kinesis_mock_pass() or code


def kinesis_mock_pass() -> int:
    """The Kinesis tests again, against kinesis-mock in a private network namespace."""
    missing = [tool for tool in ("node", "npm", "unshare", "ip") if shutil.which(tool) is None]
    if missing:
        print(f"dev.py: kinesis-mock pass skipped: {', '.join(missing)} not installed", flush=True)
        return 0
    if os.geteuid() != 0:
        print("dev.py: kinesis-mock pass skipped: unshare -n needs root", flush=True)
        return 0
    if not (KINESIS_MOCK_DIR / "node_modules" / "kinesis-local" / "main.js").exists():
        install = ("npm", "install", "--prefix", KINESIS_MOCK_DIR, "--no-audit", "--no-fund", KINESIS_MOCK)
        if run(*install) != 0:
            print("dev.py: npm could not install kinesis-mock", flush=True)
            return 1
    suite = f"{PYTHON} -m pytest -m kinesis --aws-backend=kinesis-mock tests/integration"
    inner = f"ip link set lo up && exec {suite}"
    code = run("unshare", "-n", "sh", "-c", inner)
    return 1 if code == PYTEST_NO_TESTS else code


def lint(extra: list[str]) -> int:
    checks: tuple[tuple[str | Path, ...], ...] = (
        (BIN / "ruff", "check", ".", *extra),
        (BIN / "ruff", "format", "--check", "."),
        (BIN / "mypy",),
        (BIN / "cfn-lint", "infra/template.yaml"),
    )
    failed = [check for check in checks if run(*check) != 0]
    return 1 if failed else 0


COMMANDS = {"demo": demo, "test": test, "lint": lint}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
