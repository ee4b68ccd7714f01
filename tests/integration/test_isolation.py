"""While the suite runs, nothing it started listens on an address other than loopback, and no
container has a network interface other than loopback.

"What it started" is this pytest process and its descendants, the Docker engine (``dockerd``,
``containerd``) and every container's processes: each listening socket in this network namespace
(``/proc/net/{tcp,tcp6,udp,udp6}``) is traced to its owner through ``/proc/<pid>/fd``. Sockets whose
owner is not visible here belong to another PID namespace (the machine's own services), not to the
suite. A container's interfaces are read from ``/proc/<its pid>/net/dev``, which shows its network
namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.containers import engine

pytestmark = pytest.mark.integration

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"
ENGINE_PROGRAMS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy"}


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return address.ipv4_mapped or address


def listening_sockets() -> dict[int, str]:
    """Socket inode -> ``proto address:port`` for every listening TCP / bound unconnected UDP socket
    of this network namespace."""
    found: dict[int, str] = {}
    for proto, state in (
        ("tcp", TCP_LISTEN),
        ("tcp6", TCP_LISTEN),
        ("udp", UDP_UNCONNECTED),
        ("udp6", UDP_UNCONNECTED),
    ):
        table = Path("/proc/net") / proto
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != state:
                continue
            address, port = fields[1].split(":")
            found[int(fields[9])] = f"{proto} {_address(address)}:{int(port, 16)}"
    return found


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, program name) of every process visible here."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        table[int(entry.name)] = (parent, name)
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, str]]) -> set[int]:
    found = set(roots)
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def socket_owners(pids: set[int]) -> dict[int, int]:
    """Socket inode -> pid, for the sockets these processes hold."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = pid
        except OSError:
            continue
    return owners


def running_containers() -> list[dict[str, object]]:
    if engine.unavailable_reason() is not None:
        return []
    docker = engine.client()
    ids = subprocess.run([docker, "ps", "-q"], capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    inspected = subprocess.run([docker, "inspect", *ids], capture_output=True, text=True, check=True)
    return list(json.loads(inspected.stdout))


def interfaces(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines]


def test_nothing_the_suite_started_listens_beyond_loopback(aws_endpoint: str, backend: str) -> None:
    table = processes()
    containers = running_containers()
    roots = {os.getpid()} | {pid for pid, (_, name) in table.items() if name in ENGINE_PROGRAMS}
    roots |= {int(c["State"]["Pid"]) for c in containers}  # type: ignore[index]
    ours = descendants(roots, table)
    owners = socket_owners(ours)

    exposed = {
        f"{where} (pid {owners[inode]} {table[owners[inode]][1]})"
        for inode, where in listening_sockets().items()
        if inode in owners and not ipaddress.ip_address(where.split()[1].rsplit(":", 1)[0]).is_loopback
    }

    assert any(inode in owners for inode in listening_sockets()), "found none of the suite's own listeners"
    assert not exposed


def test_every_container_has_only_loopback(aws_endpoint: str, backend: str) -> None:
    containers = running_containers()
    if backend == "localstack":
        assert containers, "the LocalStack container is not running"

    for container in containers:
        name = container["Name"]
        mode = container["HostConfig"]["NetworkMode"]  # type: ignore[index]
        assert mode == "none" or str(mode).startswith("container:"), f"{name}: network {mode}"
        assert interfaces(int(container["State"]["Pid"])) == ["lo"], name  # type: ignore[index]
