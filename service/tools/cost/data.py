"""The calculator's two data files, read once: list prices (``prices.json``) and measured per-record
figures (``measured.json``).

``prices.json`` holds us-east-1 list prices in US dollars per unit, with the date they were taken and
the page each came from. ``measured.json`` holds, per mode, what one run cost *per 1,000 samples
processed* (``per_1k_records``: item write and read units, S3 requests, publishes, CPU seconds, gzip
archive bytes, and in Lambda mode invocations, GB-seconds and log bytes), what it cost per second
(``per_second``, kept for comparison: the calculator models time-driven costs from the settings), the
resident memory of one process and the bytes of one sample. ``Measured.from_report`` builds the same
figures from a demo report (``vitalstream demo --report FILE``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from service.tools.cost.counts import s3_tier

HERE = Path(__file__).parent
PRICES_FILE = HERE / "prices.json"
MEASURED_FILE = HERE / "measured.json"


class CostInputError(Exception):
    """A data file or a report the calculator cannot use; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Prices:
    """List prices: ``price(service, item)`` in US dollars per unit; ``as_of`` and ``sources`` say
    when and where they were taken."""

    raw: Mapping[str, Any]

    @property
    def as_of(self) -> str:
        return str(self.raw["as_of"])

    def price(self, service: str, item: str) -> float:
        try:
            return float(self.raw[service][item])
        except (KeyError, TypeError, ValueError) as exc:
            raise CostInputError(f"{PRICES_FILE.name}: no price {service}.{item}") from exc

    def tiers(self, service: str, item: str) -> list[tuple[float | None, float]]:
        """Volume tiers as (size of the tier or None for the rest, price per unit)."""
        return [(None if size is None else float(size), float(p)) for size, p in self.raw[service][item]]


@cache
def list_prices(path: Path = PRICES_FILE) -> Prices:
    return Prices(json.loads(path.read_text()))


@dataclass(frozen=True, slots=True)
class Measured:
    """One mode's measured figures: ``per_1k`` samples, ``per_second`` of the measured run."""

    mode: str
    per_1k: Mapping[str, float]
    per_second: Mapping[str, float]
    memory_bytes: float
    sample_bytes: float
    measured_at: str
    source: str

    def per_sample(self, key: str) -> float:
        return self.per_1k.get(key, 0.0) / 1000

    @classmethod
    def from_report(cls, report: Mapping[str, Any], base: Measured) -> Measured:
        """A demo report's per-1K counts over ``base`` (what a report does not count: CPU, memory,
        bytes). The lease table's items are left out (renewals, checkpoints and Scans are modelled per
        second), and in consumer mode the archive files the run left (``s3_objects``) and one snapshot PUT
        each are taken out of its S3 PUTs: the calculator models file cuts per second. What else a
        short run spends per second (alert bursts, restores) stays in its per-record figures."""
        try:
            writes = _without_leases(report["dynamodb_item_writes_per_1k"])
            reads = _without_leases(report["dynamodb_item_reads_per_1k"])
            calls: Mapping[str, float] = report["calls_per_1k"]
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise CostInputError(f"the report lacks per-1K counts ({exc})") from exc
        per_1k = dict(base.per_1k)
        per_1k.update(
            dynamodb_write_units=writes,
            dynamodb_read_units=reads,
            s3_put=max(0.0, _s3(calls, "put") - _files_per_1k(report, base.mode)),
            s3_get=_s3(calls, "get"),
            sns_publish=sum(float(n) for k, n in calls.items() if k.startswith("sns.")),
            sqs_requests=sum(float(n) for k, n in calls.items() if k.startswith("sqs.")),
        )
        return cls(
            base.mode,
            per_1k,
            base.per_second,
            base.memory_bytes,
            base.sample_bytes,
            "this demo run",
            f"demo report ({report.get('devices')} devices for {report.get('duration_s')} s); CPU, memory "
            f"and bytes from measured.json of {base.measured_at}",
        )


def measured(mode: str, path: Path = MEASURED_FILE) -> Measured:
    raw = _measured_file(path)
    try:
        entry = raw["modes"][mode]
        return Measured(
            mode,
            per_record_shares({k: float(v) for k, v in entry["per_1k_records"].items()}, entry.get("setup")),
            {k: float(v) for k, v in entry["per_second"].items()},
            float(entry["memory_bytes"]),
            float(entry["sample_bytes"]),
            str(raw["measured_at"]),
            str(raw["source"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CostInputError(f"{path.name}: mode {mode!r} unusable ({exc!r})") from exc


def per_record_shares(per_1k: dict[str, float], setup: Mapping[str, float] | None) -> dict[str, float]:
    """A benchmark's raw figures per 1,000 records less what its run spent per second or per device,
    which the calculator models itself (``setup``: the run's ``records``, ``devices``, ``shards``,
    ``duration_s`` and ``file_max_age_s``): the archive files and snapshots cut by age (one of each per
    shard per age, and one more at the final flush) and the first read of each device. A Lambda run's
    setup has ``window_s`` instead: each device's states are written once per window it touches (the
    run's last windows' handoffs counted as the writes they owe), about ``duration_s / window_s + 1``
    windows in a run, of which the calculator's reference (one per window per device) explains
    ``duration_s / window_s``: the one more window of each device is taken out of its write units, and
    out of its read units its first read (a window hands its devices on to the next, which does not
    read them again). Without a setup the figures are taken as per-record shares already."""
    if not setup:
        return per_1k
    records = float(setup["records"])
    if "window_s" in setup:
        extra_window = 1000 * float(setup["devices"]) / records
        return {
            **per_1k,
            "dynamodb_write_units": max(0.0, per_1k.get("dynamodb_write_units", 0.0) - extra_window),
            "dynamodb_read_units": max(0.0, per_1k.get("dynamodb_read_units", 0.0) - extra_window),
        }
    cuts = float(setup["shards"]) * 2 * (float(setup["duration_s"]) / float(setup["file_max_age_s"]) + 1)
    shares = dict(per_1k)
    shares["s3_put"] = max(0.0, per_1k.get("s3_put", 0.0) - 1000 * cuts / records)
    first_reads = 1000 * float(setup["devices"]) / records
    shares["dynamodb_read_units"] = max(0.0, per_1k.get("dynamodb_read_units", 0.0) - first_reads)
    return shares


@cache
def _measured_file(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _s3(calls: Mapping[str, float], tier: str) -> float:
    """S3 requests per 1K of one price tier, from a report's ``"s3.Operation"`` counts."""
    return sum(float(n) for k, n in calls.items() if k.startswith("s3.") and s3_tier(k[3:]) == tier)


def _files_per_1k(report: Mapping[str, Any], mode: str) -> float:
    """A consumer run's archive files and their snapshots per 1K records (none in Lambda mode)."""
    sent, files = float(report.get("sent", 0) or 0), float(report.get("s3_objects", 0) or 0)
    return 2 * 1000 * files / sent if mode == "consumer" and sent > 0 else 0.0


def _without_leases(by_table: Mapping[str, float]) -> float:
    """Item units per 1K of every table but the lease table (``...-leases``)."""
    return sum(float(n) for table, n in by_table.items() if not table.endswith("leases"))
