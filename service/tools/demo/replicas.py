"""Consumer replicas as real processes: ``vitalstream consume`` times N against one AWS endpoint.

What a Deployment's pods are on a cluster, on one machine: each replica is its own Python process with
its own worker id, its own ``/metrics`` port on 127.0.0.1 and its own JSON log file. The demo runs the
pipeline through them, and the consumer's fault tests kill, stop and restart them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from service.runtime.accounting import CapacityKey, Kind, RequestCounts, Source
from service.tools.demo.ledger import LatencySummary
from service.tools.emulators import free_port


@dataclass
class Replica:
    worker_id: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    log_file: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout_s) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def scrape(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample of this replica's ``/metrics`` as (name, labels, value)."""
        _, text = self.get("/metrics")
        return [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of this replica's samples of ``name`` that match ``labels`` (0 when unreachable)."""
        return Scrape.of(self).total(name, **labels)

    def logs(self) -> Iterator[dict[str, Any]]:
        """The replica's JSON log lines so far (other lines are skipped)."""
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except ValueError:
                    continue


class ReplicaSet:
    """Starts replicas with ``env`` (the stack's ``VITALSTREAM_*`` settings and credentials)."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, name: str = "replica", source: Path | None = None
    ) -> None:
        """``source``: run the ``service`` package of another source tree (a bench's baseline)."""
        self._env, self._log_dir, self._name, self._source = dict(env), log_dir, name, source
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.replicas: list[Replica] = []

    def start(self, count: int = 1, extra_env: Mapping[str, str] | None = None) -> list[Replica]:
        started = []
        for _ in range(count):
            replica = self._start_one(extra_env or {})
            self.replicas.append(replica)  # before the next one: worker ids count the replicas
            started.append(replica)
        return started

    def _start_one(self, extra_env: Mapping[str, str]) -> Replica:
        worker_id = f"{self._name}-{len(self.replicas) + 1}"
        port = free_port()
        env = dict(os.environ) | self._env | dict(extra_env)
        env |= {
            "VITALSTREAM_WORKER_ID": worker_id,
            "VITALSTREAM_METRICS_HOST": "127.0.0.1",
            "VITALSTREAM_METRICS_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = self._log_dir / f"{worker_id}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "consume"],
            env=env,
            cwd=self._source,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        return Replica(worker_id, port, log_path, process, log_file)

    @property
    def running(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.running]

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        for replica in self.running:
            while True:
                if not replica.running:
                    raise RuntimeError(f"{replica.worker_id} exited: see {replica.log_path}")
                try:
                    if replica.get("/readyz", timeout_s=2.0)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{replica.worker_id} not ready in {timeout_s:.0f} s")
                time.sleep(0.2)

    def signal(self, replica: Replica, signum: int = signal.SIGTERM) -> None:
        replica.process.send_signal(signum)

    def stop(self, timeout_s: float = 60.0) -> dict[str, int | None]:
        """SIGTERM every running replica, wait for each; return exit codes by worker id."""
        for replica in self.running:
            replica.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for replica in self.replicas:
            try:
                codes[replica.worker_id] = replica.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                codes[replica.worker_id] = None
            replica.log_file.close()
        return codes

    def scrape(self) -> Scrape:
        """One scrape of every running replica, together."""
        return Scrape.of(*self.running)


SETTLED = ("processed", "rejected", "duplicate")  # record outcomes that are done with


@dataclass(frozen=True)
class Scrape:
    """The ``/metrics`` samples of one or more replicas, read once; replicas that do not answer (starting
    or stopping) add nothing."""

    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def of(cls, *replicas: Replica) -> Scrape:
        samples = []
        for replica in replicas:
            try:
                samples += replica.scrape()
            except OSError:
                continue
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, sample_labels, value in self.samples
            if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    @property
    def settled(self) -> int:
        return int(sum(self.total("vitalstream_records_total", outcome=o) for o in SETTLED))

    @property
    def leases(self) -> int:
        return int(self.total("vitalstream_leases_held"))

    def requests(self) -> RequestCounts:
        """The replicas' request accounting, summed (``service.runtime.accounting``)."""
        requests: dict[tuple[str, str], int] = {}
        writes: dict[str, int] = {}
        reads: dict[str, int] = {}
        units: dict[CapacityKey, float] = {}
        for sample, labels, value in self.samples:
            if sample == "vitalstream_aws_requests_total":
                key = (labels["service"], labels["operation"])
                requests[key] = requests.get(key, 0) + int(value)
            elif sample == "vitalstream_dynamodb_item_writes_total":
                writes[labels["table"]] = writes.get(labels["table"], 0) + int(value)
            elif sample == "vitalstream_dynamodb_item_reads_total":
                reads[labels["table"]] = reads.get(labels["table"], 0) + int(value)
            elif sample == "vitalstream_dynamodb_capacity_units_total":
                unit = (labels["table"], Kind(labels["kind"]), Source(labels["source"]))
                units[unit] = units.get(unit, 0.0) + value
        return RequestCounts(requests, writes, reads, units)

    def latency(self, histogram: str = "vitalstream_event_to_sink_seconds", **labels: str) -> LatencySummary:
        """Percentiles of one histogram of every replica (event-to-sink by default), bucket-interpolated;
        ``labels`` select its series."""
        buckets: dict[float, float] = {}
        for sample, found, value in self.samples:
            if sample == f"{histogram}_bucket" and all(found.get(k) == v for k, v in labels.items()):
                bound = float(found["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        return histogram_summary(buckets)


def histogram_summary(cumulative: Mapping[float, float]) -> LatencySummary:
    """p50/p95/p99 in ms from cumulative bucket counts keyed by upper bound (as ``histogram_quantile``)."""
    bounds = sorted(cumulative)
    count = int(cumulative[bounds[-1]]) if bounds else 0
    if count == 0:
        return LatencySummary(0, None, None, None)

    def quantile(q: float) -> float:
        rank = q * count
        lower_bound, lower_count = 0.0, 0.0
        for bound in bounds:
            if cumulative[bound] >= rank:
                if bound == float("inf"):
                    return lower_bound * 1000
                share = (rank - lower_count) / max(cumulative[bound] - lower_count, 1e-9)
                return (lower_bound + (bound - lower_bound) * share) * 1000
            lower_bound, lower_count = bound, cumulative[bound]
        return lower_bound * 1000

    return LatencySummary(count, quantile(0.50), quantile(0.95), quantile(0.99))
