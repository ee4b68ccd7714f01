"""CPU and memory of the processes a bench starts, read from /proc (Linux): whole-process figures
that need no cooperation from the process measured."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
QUIET = contextlib.suppress(OSError, IndexError, ValueError)  # a process ended while /proc was read


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


@dataclass
class ProcessCpu:
    """One process's CPU samples ``(monotonic s, cpu s)`` over the part of a run it was seen in."""

    name: str
    samples: list[tuple[float, float]] = field(default_factory=list)

    def cores(self, until: float = float("inf")) -> float:
        """Mean cores used while it was seen (up to ``until``, a monotonic time)."""
        samples = [(t, c) for t, c in self.samples if t <= until] or self.samples[:1]
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        return (c1 - c0) / max(t1 - t0, 1e-9)

    def peak_cores(self, window_s: float, until: float = float("inf")) -> float:
        """Cores used in its busiest stretch of ``window_s`` (consecutive windows, up to ``until``)."""
        peak, (t0, c0) = 0.0, self.samples[0]
        for t, c in self.samples[1:]:
            if t > until:
                break
            if t - t0 >= window_s:
                peak, (t0, c0) = max(peak, (c - c0) / (t - t0)), (t, c)
        return peak


@dataclass
class CpuSampler:
    """Samples this process (``bench``) and every descendant once a second while it runs (a thread
    of its own). A descendant is kept when its command line holds a marker of ``name_of``, and named
    by it; a name ending in "-" is numbered in order of appearance (``replica-1``, ``replica-2``)."""

    name_of: dict[bytes, str]
    interval_s: float = 1.0
    started: float = field(default_factory=time.monotonic)
    processes: dict[int, ProcessCpu] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def by_name(self) -> dict[str, ProcessCpu]:
        return {p.name: p for p in self.processes.values() if len(p.samples) > 1}

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()
        self._sample()

    def _sample(self) -> None:
        at, pending = time.monotonic(), [os.getpid()]
        while pending:
            pid = pending.pop()
            try:
                cpu, cmdline = cpu_seconds(pid), Path(f"/proc/{pid}/cmdline").read_bytes()
                pending += children(pid)
            except OSError:  # ended meanwhile
                continue
            if pid not in self.processes:
                name = "bench" if pid == os.getpid() else self._name(cmdline)
                if name is None:
                    continue
                self.processes[pid] = ProcessCpu(name)
            self.processes[pid].samples.append((at, cpu))

    def _name(self, cmdline: bytes) -> str | None:
        for marker, name in self.name_of.items():
            if marker in cmdline:
                if not name.endswith("-"):
                    return name
                return f"{name}{1 + sum(p.name.startswith(name) for p in self.processes.values())}"
        return None


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with QUIET:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def usage(pid: int) -> tuple[float, float]:
    """CPU seconds (utime + stime) and RSS MB of ``pid`` and its live descendants."""
    ticks = pages = 0
    for p in tree(pid):
        with QUIET:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks, pages = ticks + int(stat[11]) + int(stat[12]), pages + int(stat[21])
    return ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def listening(pid: int) -> str:
    """The TCP addresses the emulator's processes listen on: their socket inodes in /proc/net/tcp{,6}."""
    sockets = set()
    for p in tree(pid):
        with QUIET:
            sockets |= {os.readlink(f)[8:-1] for f in Path(f"/proc/{p}/fd").iterdir()}  # socket:[inode]
    found = set()
    for table in ("tcp", "tcp6"):
        for cols in (line.split() for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]):
            if cols[3] == "0A" and cols[9] in sockets:  # 0A: LISTEN
                address, port = cols[1].split(":")
                names = {"0100007F": "127.0.0.1", "00000000": "0.0.0.0", "0" * 32: "[::]"}
                found.add(f"{names.get(address, address)}:{int(port, 16)}")
    return " ".join(sorted(found))
