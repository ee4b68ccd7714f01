"""MiniStack (PyPI ``ministack``) as the Kinesis endpoint for enhanced fan-out: of the emulators that run
here it is the one that serves SubscribeToShard (moto, kinesis-mock and kinesalite do not).

It lives in its own virtual environment: ministack pins ``botocore`` exactly (1.43.x), while this
project's ``aioboto3`` pins an older botocore, so the two cannot share one. ``scripts/dev.py test``
creates it at ``.ministack/`` (``VITALSTREAM_MINISTACK`` names another ``ministack`` executable).

Started as ``ministack`` with ``BIND_HOST=127.0.0.1`` and ``GATEWAY_PORT=<free port>``: its one HTTP
listener binds loopback only. Its other listeners stay off: ``SERVICES=kinesis`` loads Kinesis alone,
``IOT_MTLS_ENABLED=0`` keeps the IoT MQTT listener (which would bind every interface) closed, and
``SFTP_ENABLED=0`` the Transfer one. Its PID file goes to a private ``TMPDIR``.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.demo.replicas import free_port
from tests.integration.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLE = Path(os.environ.get("VITALSTREAM_MINISTACK", ROOT / ".ministack" / "bin" / "ministack"))


def unavailable_reason() -> str | None:
    if not EXECUTABLE.exists():
        return (
            f"MiniStack is not installed at {EXECUTABLE} (python3 scripts/dev.py test installs it into "
            f".ministack/, or set VITALSTREAM_MINISTACK to a ministack executable)"
        )
    return None


@contextmanager
def ministack(workdir: Path, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Start MiniStack on 127.0.0.1; yield its endpoint; stop it on exit. Logs: ``workdir/ministack.log``."""
    port = free_port()
    env = os.environ | {
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "SERVICES": "kinesis",
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "TMPDIR": str(workdir),
        "LOG_LEVEL": "WARNING",
    }
    log_path = workdir / "ministack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(EXECUTABLE)], env=env, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MiniStack exited with {process.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"MiniStack not answering after {startup_timeout_s} s") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        terminate(process)
