"""The README's three broker commands, run as written, as root — as a new user runs them in a container.

``make-certs``, then ``mosquitto -c mqtt/broker/mosquitto.conf`` (as root, Mosquitto drops to its own
user ``mosquitto`` before it reads its certificate and key), then ``vitalstream bridge``, word for word
from README.md, in a fresh directory where ``infra/`` is this checkout's. Then the devices of the doc's
``vitalstream simulate`` line publish through the broker, and every message reaches Kinesis.

The broker listens on port 8883 of every interface and the bridge reaches it as ``broker.example.org``,
so the commands run inside a private network namespace (loopback only: nothing listens beyond it) with
a private mount of ``/etc/hosts`` naming the broker 127.0.0.1. Kinesis (the embedded emulator on the
host's loopback) is reached through a unix-socket relay. Needs root (``unshare``); every process is
stopped by the test, every wait is bounded."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.containers.relay import Relay
from tests.doc_commands import bash_lines
from tests.integration.conftest import AwsStack
from tests.integration.kinesis_helpers import read_stream
from tests.observability import ROOT
from tests.tools import require_tool

pytestmark = pytest.mark.integration  # its Kinesis is the embedded emulator's: no kinesis-mock rerun
RELAY = ROOT / "tests" / "containers" / "relay.py"
NUMBER = r"\d+(?:,\d{3})*"  # as the commands print counts: 2,159
NAMESPACE_AWS_PORT = 4566  # the relay's port inside the private namespace (its loopback is its own)


def readme_commands() -> list[list[str]]:
    """The README's three broker commands and the doc's simulate line, as written."""
    readme = bash_lines((ROOT / "README.md").read_text())
    three = [words for words in readme if words[0] in ("infra/mosquitto/make-certs", "mosquitto")]
    three += [words for words in readme if words[:2] == ["vitalstream", "bridge"]]
    doc = bash_lines((ROOT / "docs" / "self-hosted-mqtt.md").read_text())
    (simulate,) = [words for words in doc if words[:2] == ["vitalstream", "simulate"]]
    assert [words[0] for words in three] == ["infra/mosquitto/make-certs", "mosquitto", "vitalstream"]
    return [*three, simulate]


class Namespace:
    """A private network and mount namespace kept open by a sleeping process; ``run``/``start`` enter it."""

    def __init__(self, hosts: Path) -> None:
        setup = f"ip link set lo up && mount --bind {hosts} /etc/hosts && exec sleep 600"
        self.holder = subprocess.Popen(["unshare", "--net", "--mount", "--", "sh", "-c", setup])
        self._wait_until_entered()

    def _wait_until_entered(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while Path(f"/proc/{self.holder.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert self.holder.poll() is None, "the namespace's holder exited"
            assert time.monotonic() < deadline, "the namespace was not set up in time"
            time.sleep(0.05)

    def command(self, words: list[str], cwd: Path = Path("/")) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--net", "--mount", f"--wd={cwd}", "--", *words]

    def start(self, words: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                self.command(words, cwd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def run(self, words: list[str], cwd: Path, env: dict[str, str], timeout_s: float) -> str:
        done = subprocess.run(
            self.command(words, cwd),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, (
            f"{' '.join(words)} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )
        return done.stdout

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    return process.returncode


def listening(namespace: Namespace, port: int) -> bool:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=0.5).close()"
    command = namespace.command([sys.executable, "-c", probe])
    return subprocess.run(command, capture_output=True, timeout=10, check=False).returncode == 0


def wait_for(condition: Any, timeout_s: float, what: str, *alive: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in alive:
            assert process.poll() is None, f"{process.args!r} exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


def wait_for_progress(
    count: Any, target: int, stall_s: float, what: str, *alive: subprocess.Popen[bytes]
) -> None:
    """Until ``count()`` reaches ``target``; fail once it has not grown for ``stall_s`` (a loaded
    machine only slows the bridge down, a stuck one stops it)."""
    best, deadline = -1, 0.0
    while (now := count()) < target:
        if now > best:
            best, deadline = now, time.monotonic() + stall_s
        for process in alive:
            assert process.poll() is None, f"{process.args!r} exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what}: stuck at {best} of {target} for {stall_s} s"
        time.sleep(0.5)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh directory any user may enter, as a checkout is (pytest's own tmp_path is private to
    root, which the broker's user could not enter), with this checkout's ``infra/`` in it."""
    path = Path(tempfile.mkdtemp(prefix="vitalstream-readme-", dir="/tmp"))
    path.chmod(0o755)
    (path / "infra").symlink_to(ROOT / "infra")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_readme_broker_commands_work_as_written_as_root(
    workdir: Path, aws_endpoint: str, aws: AwsStack
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the README's commands are run as root here (a private network namespace needs root)")
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        require_tool(tool, package)
    require_tool("openssl", "openssl")
    require_tool("mosquitto", "mosquitto", "/usr/sbin/mosquitto")
    make_certs, broker, bridge, simulate = readme_commands()
    host = make_certs[2]
    (workdir / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {host}\n")
    kinesis = aws.session.client("kinesis", endpoint_url=aws_endpoint)
    stream = f"readme-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    dlq = aws.settings.dead_letter_queue_url or ""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "VITALSTREAM_REGION": aws.settings.region,
        "VITALSTREAM_STREAM_NAME": stream,
        "VITALSTREAM_ENDPOINT_URL": f"http://127.0.0.1:{NAMESPACE_AWS_PORT}",
        "VITALSTREAM_DEAD_LETTER_TARGET": "sqs",
        "VITALSTREAM_DEAD_LETTER_QUEUE_URL": dlq,
    }
    with ExitStack() as cleanup:
        namespace = Namespace(workdir / "hosts")
        cleanup.callback(namespace.close)
        socket_path = workdir / "aws.sock"
        cleanup.enter_context(Relay.unix_to_tcp(socket_path, urlsplit(aws_endpoint).port or 80))
        relay = namespace.start(
            [sys.executable, str(RELAY), "tcp-to-unix", str(NAMESPACE_AWS_PORT), str(socket_path)],
            workdir,
            env,
            workdir / "relay.log",
        )
        cleanup.callback(stop, relay)

        namespace.run(make_certs, workdir, env, timeout_s=120)
        mosquitto = namespace.start(broker, workdir, env, workdir / "mosquitto.log")
        cleanup.callback(stop, mosquitto)
        try:
            wait_for(lambda: listening(namespace, 8883), 15, "mosquitto on 8883", mosquitto)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {(workdir / 'mosquitto.log').read_text()}") from exc
        wait_for(lambda: listening(namespace, NAMESPACE_AWS_PORT), 15, "the relay", relay)
        running_bridge = namespace.start(bridge, workdir, env, workdir / "bridge.log")
        cleanup.callback(stop, running_bridge)
        wait_for(
            lambda: "subscribed to" in (workdir / "bridge.log").read_text(), 30, "the bridge", running_bridge
        )

        said = namespace.run(simulate, workdir, env, timeout_s=300)
        sent = int(re.findall(rf"\bsent ({NUMBER}), retried {NUMBER}, failed 0;", said)[0].replace(",", ""))
        records: list[tuple[str, bytes]] = []
        dead: list[dict[str, Any]] = []

        def handled() -> int:
            nonlocal records
            records = read_stream(kinesis, stream)
            dead.extend(aws.drain(dlq))
            return len(records) + len(dead)

        what = "every message forwarded or dead-lettered"
        wait_for_progress(handled, sent, 60, what, running_bridge, mosquitto)
        assert stop(running_bridge) == 0, (workdir / "bridge.log").read_text()
    counts = dict(re.findall(rf"(forwarded|dead-lettered) ({NUMBER})", (workdir / "bridge.log").read_text()))
    assert (counts["forwarded"], counts["dead-lettered"]) == (f"{len(records):,}", f"{len(dead):,}")
    assert len(records) + len(dead) == sent > 0
    assert {key for key, _ in records} == set(make_certs[3:]), "every device of the README's make-certs"
