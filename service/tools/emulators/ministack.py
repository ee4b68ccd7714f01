"""MiniStack (PyPI ``ministack``) on 127.0.0.1: the embedded emulator's default engine.

Chosen by ``bench/emulators.py`` (figures in docs/performance.md): for the calls this product makes
it answers several times faster than moto's server at a fraction of its CPU, serves every service the
stack uses from one endpoint, and handles each request on one event loop, so concurrent writes to one
shard or item never race (moto's do). It lives in its own virtual environment, ``.ministack/``
(``python3 scripts/dev.py`` creates it from ``requirements/ministack.lock``): ministack pins
``botocore`` exactly, to a release this project's ``aioboto3`` does not accept. ``VITALSTREAM_MINISTACK``
names another ``ministack`` executable.

The child runs ``ministack_server.py`` (beside this file) with MiniStack's interpreter: it mends the
measured defects described there, then serves. Its one listener binds 127.0.0.1
(``BIND_HOST``); the IoT MQTT and SFTP listeners, which would bind every interface, stay closed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from service.tools.emulators import free_port

ROOT = Path(__file__).resolve().parents[3]
SERVER = Path(__file__).with_name("ministack_server.py")
HEALTH_PATH = "/_ministack/health"


class MiniStackMissingError(RuntimeError):
    """MiniStack's environment is not installed where it is looked for; the message says how to fix it."""


def executable() -> Path:
    """The ``ministack`` executable: ``VITALSTREAM_MINISTACK`` or ``.ministack/bin/ministack``."""
    return Path(os.environ.get("VITALSTREAM_MINISTACK", ROOT / ".ministack" / "bin" / "ministack"))


def unavailable_reason() -> str | None:
    where = executable()
    if where.exists():
        return None
    return (
        f"MiniStack is not installed at {where}: python3 scripts/dev.py demo (or test) creates .ministack/ "
        "from requirements/ministack.lock; VITALSTREAM_MINISTACK may name another ministack executable"
    )


class MiniStackServer:
    """One MiniStack child on ``127.0.0.1:port`` (0 = a free port), its log in a private folder."""

    def __init__(self, port: int = 0, services: str = "", log_dir: Path | None = None) -> None:
        self._port, self._services = port, services
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> str:
        reason = unavailable_reason()
        if reason is not None:
            raise MiniStackMissingError(reason)
        port = self._port or free_port()
        workdir = self._log_dir or Path(tempfile.mkdtemp(prefix="vitalstream-ministack-"))
        env = os.environ | {
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "SERVICES": self._services,
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "TMPDIR": str(workdir),
            "LOG_LEVEL": "WARNING",
        }
        python = executable().with_name("python")
        log_path = workdir / "ministack.log"
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(python), "-P", str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while not _answers(endpoint):
            code = self._process.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                said = log_path.read_text(errors="replace")[-600:]
                raise RuntimeError(
                    f"MiniStack did not start on {endpoint} (exit {code}); its log ends: {said}"
                )
            time.sleep(0.1)
        return endpoint

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + HEALTH_PATH, timeout=1):
            return True
    except OSError:
        return False
