"""kinesis-mock (npm ``kinesis-local``, LocalStack's own Kinesis engine) as a test backend.

It binds every interface, so it is only started inside a private network namespace — one whose only
interface is loopback, as ``unshare -n`` gives (``scripts/dev.py test`` runs the Kinesis suite so
when it can). Anywhere else ``unavailable_reason`` says why not, and the suite skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.tools.emulators import free_port
from tests.integration.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(os.environ.get("VITALSTREAM_KINESIS_MOCK_DIR", ROOT / ".kinesis-mock" / "node_modules"))
MAIN = PACKAGE_DIR / "kinesis-local" / "main.js"
# Resharding and consumer registration finish in 50 ms instead of the service's seconds.
FAST_DURATIONS = {
    name: "50ms"
    for name in (
        "CREATE_STREAM_DURATION",
        "DELETE_STREAM_DURATION",
        "SPLIT_SHARD_DURATION",
        "MERGE_SHARDS_DURATION",
        "UPDATE_SHARD_COUNT_DURATION",
        "REGISTER_STREAM_CONSUMER_DURATION",
        "DEREGISTER_STREAM_CONSUMER_DURATION",
        "START_STREAM_ENCRYPTION_DURATION",
        "STOP_STREAM_ENCRYPTION_DURATION",
    )
}


def in_private_network_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def unavailable_reason() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "kinesis-mock needs node, which is not installed: apt-get install -y nodejs"
    if not MAIN.exists():
        return f"kinesis-mock is not installed at {MAIN} (python3 scripts/dev.py test installs it with npm)"
    if not in_private_network_namespace():
        return "kinesis-mock binds all interfaces: run it inside a private network namespace (unshare -n)"
    return None


@contextmanager
def kinesis_mock(log_path: Path, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Start kinesis-mock; yield its plain-HTTP endpoint on 127.0.0.1; stop it on exit."""
    plain, tls = free_port(), free_port()
    env = os.environ | FAST_DURATIONS
    env |= {
        "KINESIS_MOCK_PLAIN_PORT": str(plain),
        "KINESIS_MOCK_TLS_PORT": str(tls),
        "KINESIS_MOCK_CERT_PATH": str(MAIN.parent / "server.json"),
        "LOG_LEVEL": "WARN",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(["node", str(MAIN)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"kinesis-mock exited with {process.returncode}; see {log_path}")
            try:
                socket.create_connection(("127.0.0.1", plain), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kinesis-mock not listening after {startup_timeout_s} s") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{plain}"
    finally:
        terminate(process)
