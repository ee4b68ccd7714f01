"""The measured inputs of ``vitalstream cost`` for consumer mode, from one ``bench/consumer.py --cost`` run.

Per-second and per-record costs are measured apart, never by scaling a short run: the replicas first
hold their leases with no records for a fixed idle phase (renewals, lease-round Scans, empty
GetRecords polls: the per-second rates), then the fleet publishes and the replicas drain and stop
(the loaded phase). A per-record figure is what the loaded phase used beyond the idle rates over its
duration: ``(loaded total - per_second x loaded seconds) / records``, per 1,000 records settled.

Calls and DynamoDB capacity units are the counting proxy's (``tests/integration/fault_proxy.py``,
in front of the emulator for every call of the replicas, the shutdown flush included); capacity is
what the emulator's ``ConsumedCapacity`` reports, or one unit per item where it reports none — the
share of each is written into ``source``. CPU seconds are the replicas' own (/proc), memory the
largest peak RSS (VmHWM) of one replica, archive bytes the gzip objects in the archive bucket, sample
bytes the mean payload sent. The figures describe this setup (``SHARDS`` shards, ``REPLICAS``
replicas, on one machine with the emulator): per-second rates are for the whole of it.

    {"measured_at": "YYYY-MM-DD", "source": "...",
     "modes": {"consumer": {"per_1k_records": {...}, "per_second": {...},
                            "memory_bytes": int, "sample_bytes": int}}}

``write_measured`` merges into an existing file, replacing only the given mode's entry
(``bench/lambda_windows.py`` writes the ``lambda`` one).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processes import cpu_seconds, status_kib

from service.runtime.accounting import CapacityKey, Kind, Source
from tests.integration.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
MEASURED_JSON = ROOT / "service" / "tools" / "cost" / "measured.json"


@dataclass(frozen=True)
class Snapshot:
    """The proxy's counts and the replicas' CPU seconds at one moment."""

    at: float
    calls: Counter[tuple[str, str]]
    units: dict[CapacityKey, float]
    cpu_s: float

    @classmethod
    def take(cls, proxy: FaultProxy, pids: list[int], cpu_s: float | None = None) -> Snapshot:
        with proxy._lock:
            calls, units = Counter(proxy.calls), dict(proxy.capacity_units)
        if cpu_s is None:
            cpu_s = sum(cpu_seconds(pid) for pid in pids)
        return cls(time.monotonic(), calls, units, cpu_s)

    def since(self, earlier: Snapshot) -> Phase:
        calls = self.calls - earlier.calls
        units = {key: n - earlier.units.get(key, 0.0) for key, n in self.units.items()}
        return Phase(self.at - earlier.at, calls, units, self.cpu_s - earlier.cpu_s)


@dataclass(frozen=True)
class Phase:
    """What the replicas used between two snapshots, over ``seconds``."""

    seconds: float
    calls: Counter[tuple[str, str]]
    units: dict[CapacityKey, float]
    cpu_s: float

    def figures(self) -> dict[str, float]:
        return {
            "dynamodb_write_units": _units(self.units, Kind.WRITE),
            "dynamodb_read_units": _units(self.units, Kind.READ),
            "s3_put": float(self.calls[("s3", "PutObject")]),
            "s3_get": float(self.calls[("s3", "GetObject")]),
            "sns_publish": float(self.calls[("sns", "Publish")] + self.calls[("sns", "PublishBatch")]),
            "sqs_requests": float(sum(n for (service, _), n in self.calls.items() if service == "sqs")),
            "kinesis_get_records": float(self.calls[("kinesis", "GetRecords")]),
        }


def _units(units: dict[CapacityKey, float], kind: Kind, source: Source | None = None) -> float:
    return sum(n for (_, k, s), n in units.items() if k == kind and source in (None, s))


@dataclass
class Measurement:
    """The snapshots of one run: idle start, idle end (= load start), load end (before and after stop)."""

    idle_start: Snapshot | None = None
    load_start: Snapshot | None = None
    load_end_cpu_at: float = 0.0  # when the CPU was last read (the replicas still running)
    load_end_cpu_s: float = 0.0
    load_end: Snapshot | None = None  # after stop: the shutdown flush's calls included
    peak_rss_bytes: int = 0
    archive_bytes: int = 0
    sample_bytes: int = 0  # mean payload of a record sent
    sent: int = 0
    settled: int = 0
    notes: list[str] = field(default_factory=list)
    setup: dict[str, float] = field(default_factory=dict)  # devices, shards, replicas, file_max_age_s

    def read_peaks(self, pids: list[int]) -> None:
        """The replicas' CPU and peak RSS, just before they are stopped."""
        self.load_end_cpu_at = time.monotonic()
        self.load_end_cpu_s = sum(cpu_seconds(pid) for pid in pids)
        self.peak_rss_bytes = max(status_kib(pid, "VmHWM") for pid in pids) * 1024

    def entry(self) -> dict[str, Any]:
        """The ``consumer`` entry of the measured inputs."""
        if self.idle_start is None or self.load_start is None or self.load_end is None:
            raise ValueError("a measurement needs the idle and the loaded phase")
        idle, loaded = self.load_start.since(self.idle_start), self.load_end.since(self.load_start)
        rate = {name: n / idle.seconds for name, n in idle.figures().items()}
        records = max(self.settled, 1)
        per_1k = {
            name: round(max(n - rate[name] * loaded.seconds, 0.0) * 1000 / records, 4)
            for name, n in loaded.figures().items()
        }
        cpu_rate = idle.cpu_s / idle.seconds
        busy_s = self.load_end_cpu_at - self.load_start.at
        loaded_cpu = self.load_end_cpu_s - self.load_start.cpu_s
        per_1k["cpu_seconds"] = round(max(loaded_cpu - cpu_rate * busy_s, 0.0) * 1000 / records, 4)
        per_1k["archive_bytes_gzip"] = round(self.archive_bytes * 1000 / records, 1)
        per_second = {
            name: round(rate[name], 4)
            for name in ("dynamodb_write_units", "dynamodb_read_units", "kinesis_get_records", "s3_put")
        }
        self.notes.append(
            f"idle {idle.seconds:.0f} s (CPU {cpu_rate:.3f} s/s, not in the schema), loaded "
            f"{loaded.seconds:.0f} s, {self.settled:,} records settled of {self.sent:,} sent"
        )
        every = {**idle.units}
        for key, n in loaded.units.items():
            every[key] = every.get(key, 0.0) + n
        for kind in (Kind.WRITE, Kind.READ):
            total = _units(every, kind) or 1.0
            reported = 100 * _units(every, kind, Source.REPORTED) / total
            estimated = 100 * _units(every, kind, Source.ESTIMATED) / total
            self.notes.append(
                f"DynamoDB {kind} units {reported:.0f} % reported by the emulator's ConsumedCapacity, "
                f"{estimated:.0f} % estimated at one unit per item (no ConsumedCapacity in the response)"
            )
        return {
            "per_1k_records": per_1k,
            "per_second": per_second,
            "memory_bytes": self.peak_rss_bytes,
            "sample_bytes": self.sample_bytes,
            # what the calculator takes out of the raw figures (service.tools.cost.data.per_record_shares)
            "setup": {**self.setup, "records": records, "duration_s": round(loaded.seconds, 1)},
        }


def write_measured(path: Path, mode: str, entry: dict[str, Any], source: str) -> dict[str, Any]:
    """Merge ``entry`` into ``path`` as ``modes[mode]``, other modes kept; returns what was written.

    ``source`` says how this mode was measured: the file keeps each mode's (``sources``) and its
    ``source`` joins them (``"consumer: ... lambda: ..."``)."""
    existing: dict[str, Any] = {}
    if path.exists():
        existing = json.loads(path.read_text(encoding="utf-8"))
    modes = dict(existing.get("modes", {}))
    modes[mode] = entry
    sources = _sources(existing, list(modes))
    sources[mode] = source
    document = {
        **existing,
        "measured_at": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "source": " ".join(f"{name}: {text}" for name, text in sources.items() if name in modes),
        "sources": sources,
        "modes": modes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def _sources(existing: dict[str, Any], modes: list[str]) -> dict[str, str]:
    """Each mode's source text: the file's ``sources``, or its joined ``source`` split at ``"mode: "``."""
    if isinstance(existing.get("sources"), dict):
        return {str(k): str(v) for k, v in existing["sources"].items()}
    text = str(existing.get("source", ""))
    marks = list(re.finditer(rf"(?:^|(?<= ))({'|'.join(map(re.escape, modes))}): ", text))
    ends = [following.start() for following in marks[1:]] + [len(text)]  # each text runs to the next mark
    return {mark.group(1): text[mark.end() : end].strip() for mark, end in zip(marks, ends, strict=False)}
