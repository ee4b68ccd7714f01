"""The Docker engine the container tests use: found where one answers, or started without networks.

    python -m tests.containers.engine start   # start dockerd unless an engine already answers
    python -m tests.containers.engine stop    # remove every container; stop dockerd if we started it

``start`` runs Debian's ``dockerd`` (package ``docker.io``) as ``dockerd --bridge=none
--iptables=false --ip-masq=false``: no ``docker0`` bridge and no container network on a private
address range exist, and the engine touches no firewall rules. Containers then have only the ``none``
network (loopback alone), ``host`` (used here only by image builds that fetch from the package
registries) and ``container:<id>`` (sharing another container's loopback). The engine answers on its
unix socket only. ``stop`` stops the engine only when ``start`` started it (it keeps that process id
in ``OWNED``), with every container; a developer's own engine is left running, and only containers of
the project's images are removed from it.

Standard library only: ``scripts/dev.py`` and ``.ci/run`` call this before any package is installed.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOCKET = Path("/var/run/docker.sock")
OWNED = Path("/var/run/vitalstream-dockerd.pid")
LOG = ROOT / "out" / "engine" / "dockerd.log"
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip-masq=false")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# the images tests/containers/images.py builds and the tests run
PROJECT_IMAGE = "vitalstream:local"
LOCALSTACK_IMAGE = "vitalstream-localstack:4.14.0"
OUR_IMAGES = (PROJECT_IMAGE, LOCALSTACK_IMAGE)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def socket_path() -> Path:
    """The engine's socket: ``DOCKER_HOST`` when it names a unix socket, else the default one."""
    host = os.environ.get("DOCKER_HOST", "")
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else SOCKET


def answers(timeout: float = 2.0) -> bool:
    """True when an engine answers ``GET /_ping`` on its socket."""
    path = socket_path()
    if not path.exists():
        return False
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == http.HTTPStatus.OK
    except OSError:
        return False
    finally:
        connection.close()


def unavailable_reason() -> str | None:
    """Why no engine can be used here (one line naming the Debian package), or None."""
    if answers():
        return None
    if shutil.which("dockerd") is None:
        return "no Docker engine: apt-get install -y docker.io, then python -m tests.containers.engine start"
    return f"no Docker engine answers on {socket_path()}: python -m tests.containers.engine start (as root)"


def client() -> str:
    """The docker CLI that ships with the engine (Debian's, whose BuildKit works without buildx),
    else the first on ``PATH``."""
    dockerd = shutil.which("dockerd")  # Debian: /usr/sbin/dockerd beside /usr/bin/docker
    home = Path(dockerd).resolve().parent if dockerd else None
    beside = shutil.which("docker", path=f"{home}:{home.parent / 'bin'}") if home else None
    found = beside or shutil.which("docker")
    if found is None:
        raise SystemExit("no docker client: apt-get install -y docker.io")
    return found


def start() -> int:
    if answers():
        print(f"engine: a Docker engine already answers on {socket_path()}; using it", flush=True)
        return 0
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        print("engine: dockerd is not installed (apt-get install -y docker.io)", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("engine: starting dockerd needs root", file=sys.stderr)
        return 1
    LOG.parent.mkdir(parents=True, exist_ok=True)
    command = [dockerd, *DOCKERD_FLAGS, f"--host=unix://{socket_path()}"]
    print("engine: " + " ".join(command) + f"  (log: {LOG.relative_to(ROOT)})", flush=True)
    with LOG.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    OWNED.write_text(f"{process.pid}\n")
    began = time.monotonic()
    while time.monotonic() - began < START_TIMEOUT_S:
        if process.poll() is not None:
            OWNED.unlink(missing_ok=True)
            print(f"engine: dockerd exited ({process.returncode}); see {LOG}", file=sys.stderr)
            return 1
        if answers():
            print(f"engine: ready in {time.monotonic() - began:.1f} s", flush=True)
            return 0
        time.sleep(0.2)
    print(f"engine: dockerd did not answer within {START_TIMEOUT_S:.0f} s; see {LOG}", file=sys.stderr)
    _terminate(process.pid)
    return 1


def remove_containers(everything: bool) -> None:
    """Remove the containers of the project's images, or with ``everything`` (an engine we started)
    all of them: the tests remove their own as they finish; this catches what an interrupted run left."""
    if not answers():
        return
    docker = client()
    listing = [docker, "ps", "-aq"]
    if not everything:
        listing += [f"--filter=ancestor={image}" for image in OUR_IMAGES]
    ids = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
    if ids:
        print(f"engine: removing {len(ids)} container(s)", flush=True)
        subprocess.run([docker, "rm", "-f", *ids], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pid: int) -> None:
    """SIGTERM (dockerd then stops its own containerd), SIGKILL after ``STOP_TIMEOUT_S``."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def stop() -> int:
    remove_containers(everything=OWNED.exists())
    if not OWNED.exists():
        state = "left running" if answers() else "none running"
        print(f"engine: no engine started by this project ({state})", flush=True)
        return 0
    pid = int(OWNED.read_text().strip())
    _terminate(pid)
    OWNED.unlink(missing_ok=True)
    print(f"engine: dockerd {pid} stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    commands = {"start": start, "stop": stop}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
