#!/usr/bin/env python3
"""Bootstrap and run VitalStream on a machine that has only python3 (standard library only).

    python3 scripts/dev.py demo            # set up .venv, then run the main job
    python3 scripts/dev.py test [ARGS...]  # set up .venv, then pytest (ARGS passed through); with no
                                           # ARGS, also the Kinesis suite on kinesis-mock and the
                                           # integration suite on LocalStack (see below)
    python3 scripts/dev.py lint            # set up .venv, then ruff, mypy --strict, cfn-lint, import-linter
    python3 scripts/dev.py lock            # re-resolve requirements/*.lock from pyproject.toml

Set-up contract: ``.venv`` is created when missing and filled from ``requirements/dev.lock`` (every
runtime, dev and build dependency pinned with its hashes, installed with ``--require-hashes
--no-deps``), then the project itself, editable, without build isolation (its build backend comes from
the lock too). The install runs again whenever the lock or ``pyproject.toml`` differ from the ones last
installed (their SHA-256 is kept in ``.venv/.vitalstream-installed``, written only after a successful
install). Each step prints one line; pip's own log goes to ``.venv/install.log`` and its tail is
printed when a step fails. Exit codes are the tools' own, except that pytest's 5 (no tests collected)
becomes 1: an empty run is a failure.

The locks: ``requirements/dev.lock`` (what ``.venv`` gets), ``requirements/runtime.lock`` (the same
versions, runtime dependencies only: the Dockerfile and ``package-lambda`` install from it) and
``requirements/ministack.lock``. ``lock`` writes them with uv (installed into ``.venv`` at the version
pinned below), for every platform and Python ≥ 3.11 at once, and stamps each with the SHA-256 of the
dependency lists it was resolved from; ``tests/unit/test_lock.py`` fails when ``pyproject.toml`` and
the locks disagree.

MiniStack (PyPI ``ministack``, pinned), the embedded AWS emulator (``vitalstream demo``, ``local up``
and the integration suite's default backend; also the enhanced fan-out tests' SubscribeToShard
endpoint), gets its own venv, ``.ministack``, before ``demo`` or ``test`` runs: it pins ``botocore``
exactly to a release that conflicts with the one ``aioboto3`` pins, so it cannot go into ``.venv``
with the dev extra. It binds 127.0.0.1 (``BIND_HOST``), so it needs no network namespace.

The kinesis-mock pass: kinesis-mock (npm ``kinesis-local``, pinned) binds every interface, so it and
the tests marked ``kinesis`` run inside a private network namespace (``unshare -n``, loopback only).
That needs root, ``unshare``, ``ip`` and Node.js; where one is missing the pass is skipped and the
reason printed — or, under ``VITALSTREAM_REQUIRE_TOOLS=1`` (``.ci/run`` sets it), it fails.

The container tests and the LocalStack pass: a full ``test`` run as root where Debian's ``docker.io``
is installed and no engine answers starts one (``tests/containers/engine.py``: ``dockerd
--bridge=none --iptables=false --ip-masq=false``, so containers get loopback alone) and stops it, and
every container, at the end. The image tests (``tests/integration/test_image.py``) then build and run
the real image in the first pytest run, and the whole integration suite runs again with
``--aws-backend=localstack``, LocalStack started by testcontainers from an image built here
(``tests/containers/images.py``, needs ``debootstrap``). Without an engine both skip with the
reason, or fail under ``VITALSTREAM_REQUIRE_TOOLS=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")
PYTHON = BIN / ("python.exe" if sys.platform == "win32" else "python")
STAMP = VENV / ".vitalstream-installed"
INSTALL_LOG = VENV / "install.log"
SETUP_LOGS = ROOT / "out" / "setup"
PYTEST_NO_TESTS = 5
KINESIS_MOCK = "kinesis-local@0.6.2"
KINESIS_MOCK_DIR = ROOT / ".kinesis-mock"
MINISTACK = "ministack==1.5.33"
MINISTACK_VENV = ROOT / ".ministack"
LOCKS = ROOT / "requirements"
DEV_LOCK = LOCKS / "dev.lock"
RUNTIME_LOCK = LOCKS / "runtime.lock"
MINISTACK_LOCK = LOCKS / "ministack.lock"
# LocalStack's image (tests/containers/localstack, x86-64) installs this lock: localstack-core needs
# Python >= 3.12 (the image has Debian trixie's 3.13), and its dependencies resolve as of its release
# day (2026-02-26), since later releases of some (cbor2 6) break it.
LOCALSTACK = "localstack-core[runtime]==4.14.0"
LOCALSTACK_AS_OF = "2026-02-27T00:00:00Z"
LOCALSTACK_PYTHON = "3.13"
LOCALSTACK_LOCK = LOCKS / "localstack.lock"
UV = "uv==0.13.8"
DIGEST_LINE = "# dependencies sha256: "
REQUIRE_TOOLS = "VITALSTREAM_REQUIRE_TOOLS"
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", re.MULTILINE)


def run(*command: str | Path) -> int:
    print("+ " + " ".join(str(part) for part in command), flush=True)
    return subprocess.run([str(part) for part in command], cwd=ROOT, check=False).returncode


def step(title: str, *command: str | Path, log: Path = INSTALL_LOG) -> None:
    """Run one set-up step quietly: one line on the terminal, the tool's output in ``log``."""
    print(f"dev.py: {title}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n+ {' '.join(str(part) for part in command)}\n")
        out.flush()
        code = subprocess.run(
            [str(part) for part in command], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        sys.exit(f"{tail}\ndev.py: {title} failed (exit {code}); the whole log is {log}")


def pinned_count(lock: Path) -> int:
    return len(_PIN.findall(lock.read_text()))


def dependency_lists() -> dict[str, list[str]]:
    """What the locks are resolved from: pyproject's runtime, dev and build-system requirements."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {
        "dependencies": project["project"]["dependencies"],
        "dev": project["project"]["optional-dependencies"]["dev"],
        "build-system": project["build-system"]["requires"],
        "ministack": [MINISTACK],
        "localstack": [LOCALSTACK],
    }


def dependency_digest() -> str:
    return hashlib.sha256(json.dumps(dependency_lists(), sort_keys=True).encode()).hexdigest()


def stamped_digest(lock: Path) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_LINE):
            return line.removeprefix(DIGEST_LINE).strip()
    return None


def install_hash() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", DEV_LOCK):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> None:
    """Create ``.venv`` and install the lock and the project into it unless they are current."""
    pip = BIN / ("pip.exe" if sys.platform == "win32" else "pip")
    if not (PYTHON.exists() and pip.exists()):
        # --clear also repairs a .venv left without pip by an earlier failed creation
        print("dev.py: creating the environment in .venv", flush=True)
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(VENV)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            sys.exit(
                f"{made.stdout}{made.stderr}dev.py: could not create .venv; on Debian/Ubuntu install the "
                "venv module first (apt-get install python3-venv)"
            )
    wanted = install_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    INSTALL_LOG.write_text("")
    quiet = ("--disable-pip-version-check", "--no-input")
    step(
        f"installing {pinned_count(DEV_LOCK)} packages from {DEV_LOCK.relative_to(ROOT)}",
        *(PYTHON, "-m", "pip", "install", *quiet, "--require-hashes", "--no-deps", "-r", DEV_LOCK),
    )
    step(
        "installing vitalstream itself (editable)",
        *(PYTHON, "-m", "pip", "install", *quiet, "--no-deps", "--no-build-isolation", "-e", "."),
    )
    STAMP.write_text(wanted + "\n")


def ensure_ministack() -> None:
    """Create ``.ministack`` from its lock unless that lock is what is installed there."""
    stamp = MINISTACK_VENV / ".vitalstream-installed"
    wanted = hashlib.sha256(MINISTACK_LOCK.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    python = MINISTACK_VENV / BIN.name / PYTHON.name
    log = SETUP_LOGS / "ministack-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    step("creating .ministack (the embedded AWS emulator)", sys.executable, "-m", "venv", "--clear",
         MINISTACK_VENV, log=log)  # fmt: skip
    step(
        f"installing {pinned_count(MINISTACK_LOCK)} packages from {MINISTACK_LOCK.relative_to(ROOT)}",
        *(python, "-m", "pip", "install", "--disable-pip-version-check", "--require-hashes"),
        *("--no-deps", "-r", MINISTACK_LOCK),
        log=log,
    )
    stamp.write_text(wanted + "\n")


def lock(extra: list[str]) -> int:
    """Re-resolve the four locks (``--upgrade`` moves every pin to the newest allowed release)."""
    uv = BIN / "uv"
    if not uv.exists():
        step(f"installing {UV} (resolves the locks)", PYTHON, "-m", "pip", "install", "--no-deps", UV)
    common = ("pip", "compile", "--generate-hashes", "--quiet")
    header = ("--custom-compile-command", "python3 scripts/dev.py lock")
    lists = dependency_lists()
    LOCKS.mkdir(exist_ok=True)
    sources = {
        DEV_LOCK: ("pyproject.toml", "--extra", "dev", "-"),
        RUNTIME_LOCK: ("pyproject.toml", "--constraint", DEV_LOCK.relative_to(ROOT), "-"),
        MINISTACK_LOCK: ("-",),
        LOCALSTACK_LOCK: ("--exclude-newer", LOCALSTACK_AS_OF, "-"),
    }
    # the project's locks hold for every platform and Python >= 3.11; LocalStack's for its image only
    target = {path: ("--universal", "--python-version", "3.11") for path in sources}
    target[LOCALSTACK_LOCK] = (
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--python-version",
        LOCALSTACK_PYTHON,
    )
    stdin = {
        DEV_LOCK: "\n".join(lists["build-system"]),
        RUNTIME_LOCK: "\n".join(lists["build-system"]),
        MINISTACK_LOCK: MINISTACK,
        LOCALSTACK_LOCK: LOCALSTACK,
    }
    digest = dependency_digest()
    for path, inputs in sources.items():
        command = [str(uv), *common, *target[path], *header, *extra, *map(str, inputs)]
        command += ["-o", str(path.relative_to(ROOT))]
        print("+ " + " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT, input=stdin[path], text=True, check=False)
        if done.returncode != 0:
            return done.returncode
        lines = path.read_text().splitlines(keepends=True)
        lines.insert(2, f"{DIGEST_LINE}{digest}\n")
        path.write_text("".join(lines))
        print(f"dev.py: {path.relative_to(ROOT)}: {pinned_count(path)} packages", flush=True)
    return 0


def demo(extra: list[str]) -> int:
    ensure_ministack()
    return run(BIN / "vitalstream", "demo", "--report", "out/demo-report.json", *extra)


def pytest(*args: str) -> int:
    code = run(PYTHON, "-m", "pytest", *args)
    return 1 if code == PYTEST_NO_TESTS else code


def test(extra: list[str]) -> int:
    ensure_ministack()
    if extra:  # a focused run: only what was asked for, on the engine that is there (if any)
        return pytest(*extra)
    started = engine("start") == 0 if can_start_engine() else False
    try:
        codes = [pytest(), kinesis_mock_pass(), localstack_pass()]
    finally:
        if started:
            engine("stop")
    return next((code for code in codes if code), 0)


def tool_missing(name: str, reason: str) -> int:
    """A missing system tool skips the pass, or fails it under VITALSTREAM_REQUIRE_TOOLS."""
    if os.environ.get(REQUIRE_TOOLS, "") not in ("", "0", "false", "no"):
        print(f"dev.py: {name} pass FAILED: {reason} ({REQUIRE_TOOLS} is set)", flush=True)
        return 1
    print(f"dev.py: {name} pass skipped: {reason}", flush=True)
    return 0


def engine(command: str) -> int:
    """``start`` or ``stop`` the Docker engine (tests/containers/engine.py: no container networks)."""
    return run(PYTHON, "-m", "tests.containers.engine", command)


def engine_unavailable() -> str:
    """Why no Docker engine can be used (empty when one answers)."""
    probe = "from tests.containers.engine import unavailable_reason as r; print(r() or '')"
    done = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or done.stderr.strip()[-300:]


def can_start_engine() -> bool:
    """Debian's dockerd is installed, we are root, and no engine answers yet: ``test`` starts one
    for the whole run (the image tests and the LocalStack pass) and stops it afterwards."""
    return shutil.which("dockerd") is not None and os.geteuid() == 0 and engine_unavailable() != ""


def localstack_pass() -> int:
    """The whole integration suite again, on LocalStack in a container (tests/integration/localstack.py)."""
    reason = engine_unavailable()
    if reason:
        return tool_missing("LocalStack", reason)
    return pytest("--aws-backend=localstack", "tests/integration")


def kinesis_mock_pass() -> int:
    """The Kinesis tests again, against kinesis-mock in a private network namespace."""
    packages = {"node": "nodejs", "npm": "npm", "unshare": "util-linux", "ip": "iproute2"}
    missing = [tool for tool in packages if shutil.which(tool) is None]
    if missing:
        names = " ".join(packages[tool] for tool in missing)
        return tool_missing(
            "kinesis-mock", f"{', '.join(missing)} not installed (apt-get install -y {names})"
        )
    if os.geteuid() != 0:
        return tool_missing("kinesis-mock", "unshare -n needs root")
    if not (KINESIS_MOCK_DIR / "node_modules" / "kinesis-local" / "main.js").exists():
        log = SETUP_LOGS / "kinesis-mock-install.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        step(
            f"installing kinesis-mock ({KINESIS_MOCK}, npm)",
            *("npm", "install", "--prefix", KINESIS_MOCK_DIR, "--no-audit", "--no-fund", KINESIS_MOCK),
            log=log,
        )
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
        (BIN / "lint-imports",),  # the import contracts in pyproject.toml
    )
    failed = [check for check in checks if run(*check) != 0]
    return 1 if failed else 0


COMMANDS = {"demo": demo, "test": test, "lint": lint, "lock": lock}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_venv()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
