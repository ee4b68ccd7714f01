"""What Kubernetes mode asks AWS for, per 1,000 records: this tree against a baseline commit, one run.

    python bench/consumer.py --cost                       # 500 devices, 100 events/s, 2 shards, 2 replicas
    python bench/consumer.py --cost --baseline REV --cost-duration 120s   # a shorter look

Per side (the baseline's ``service`` package is checked out into a temporary worktree and run by the same
interpreter and dependencies): a fresh embedded emulator, the stack provisioned on it, a counting
proxy (``tests/integration/fault_proxy.py``) in front of it for every call the replicas make — the
outside count — and two ``vitalstream consume`` replicas sharing two shards through it. The fleet
(``--cost-devices``, one event per 5 s each) publishes straight to the emulator for the duration; the
replicas then drain and stop (SIGTERM: files flushed, items written). Printed per 1,000 records
sent: device-table + alert-history item writes (the sink writes), lease-table item writes, S3 PUTs,
BatchGetItem calls, every call, and records/s; for this tree also the replicas' own
``vitalstream_aws_requests_total`` / ``vitalstream_dynamodb_item_writes_total`` beside the proxy's
count of the same moment (they must agree within 5 %). Prints; never asserts.

For this tree the run also measures the inputs of ``vitalstream cost`` (``consumer_measured.py``): an
idle phase of ``--cost-idle`` (replicas holding their leases, no records) before the fleet starts
gives the per-second rates, and the JSON is merged into ``--cost-json``
(``service/tools/cost/measured.json`` by default).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from consumer_measured import MEASURED_JSON, Measurement, Snapshot, write_measured

from service.runtime.accounting import Kind, RequestCounts, Source
from service.runtime.adapters.kinesis_writer import KinesisPublisher
from service.runtime.publishing import Message
from service.tools.cost.counts import PerThousand
from service.tools.cost.data import list_prices
from service.tools.cost.processing import REFERENCE_STATE_INTERVAL_S
from service.tools.demo.replicas import ReplicaSet
from service.tools.demo.report import priced
from service.tools.emulator import EmbeddedAws
from service.tools.provisioning import provision_stack
from simulator.fleet import Fleet
from simulator.pacing import paced
from tests.integration.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
SHARDS, REPLICAS = 2, 2


FLEET_DEVICES = 10_000  # the fleet the printed monthly bill is for


@dataclass
class CostRow:
    label: str
    sent: int = 0
    settled: int = 0  # records the replicas finished (processed, rejected or dropped as duplicates)
    started: float = 0.0
    run_s: float = 0.0  # from the fleet's start until drained
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    tables: dict[str, str] = field(default_factory=dict)  # role -> table name
    units: dict[tuple[str, Kind, Source], float] = field(default_factory=dict)  # the proxy's
    own_calls: int | None = None  # the replicas' own count, at the moment ``proxy_calls`` was read
    own_writes: int | None = None
    proxy_calls: int = 0
    proxy_writes: int = 0

    def per_k(self, value: float) -> float:
        """Per 1,000 records settled (a side that could not keep up is not credited the rest)."""
        return 1000 * value / max(self.settled, 1)

    @property
    def sink_writes(self) -> int:
        return self.writes[self.tables["state"]] + self.writes[self.tables["alerts"]]


def baseline_tree(rev: str) -> Path:
    """``rev`` checked out (detached) in a temporary worktree of this repository."""
    where = Path(tempfile.mkdtemp(prefix="vitalstream-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True)
    return where


def drop_tree(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def cost_point(
    label: str,
    source: Path | None,
    devices: int,
    duration_ms: int,
    measure: Measurement | None = None,
    idle_s: float = 0.0,
) -> CostRow:
    """One side. With ``measure``, an idle phase of ``idle_s`` first and the snapshots it needs."""
    row = CostRow(label)
    with EmbeddedAws() as endpoint:
        stack = provision_stack(
            f"bench-cost-{label}",
            endpoint_url=endpoint,
            region=REGION,
            parameters={"ShardCount": str(SHARDS)},
        )
        env = dict(stack.environment)
        row.tables = {
            "state": env["VITALSTREAM_DEVICE_STATE_TABLE"],
            "alerts": env["VITALSTREAM_ALERT_HISTORY_TABLE"],
            "leases": env["VITALSTREAM_LEASE_TABLE"],
        }
        proxy = FaultProxy(endpoint).start()
        try:
            log_dir = Path(tempfile.mkdtemp(prefix=f"vitalstream-bench-cost-{label}-"))
            # the latest-state interval the calculator's reference takes out of the measured writes
            reference = {
                "VITALSTREAM_LATEST_STATE_INTERVAL_MS": str(round(REFERENCE_STATE_INTERVAL_S * 1000))
            }
            replicas = ReplicaSet(
                env | {"VITALSTREAM_ENDPOINT_URL": proxy.url} | reference, log_dir, source=source
            )
            replicas.start(REPLICAS)
            replicas.wait_ready(timeout_s=120)
            pids = [replica.process.pid for replica in replicas.replicas]
            if measure is not None:
                _hold_leases(replicas)
                measure.idle_start = Snapshot.take(proxy, pids)
                time.sleep(idle_s)
                measure.load_start = Snapshot.take(proxy, pids)
            kinesis = boto3.client("kinesis", region_name=REGION, endpoint_url=endpoint)
            payload = _publish(kinesis, env["VITALSTREAM_STREAM_NAME"], devices, duration_ms, row)
            _drain(replicas, row)
            if measure is not None:
                measure.read_peaks(pids)
            if source is None:
                own = replicas.scrape().requests()
                with proxy._lock:  # the same moment as the scrape, give or take a renewal
                    row.proxy_calls = sum(proxy.calls.values())
                    row.proxy_writes = sum(proxy.item_writes.values())
                row.own_calls = own.calls()
                row.own_writes = sum(own.item_writes.values())
            replicas.stop()
            row.calls, row.writes = Counter(proxy.calls), Counter(proxy.item_writes)
            row.reads, row.units = Counter(proxy.item_reads), dict(proxy.capacity_units)
            if measure is not None:
                measure.load_end = Snapshot.take(proxy, [], cpu_s=measure.load_end_cpu_s)
                measure.sent, measure.settled, measure.sample_bytes = row.sent, row.settled, payload
                measure.archive_bytes = _archive_bytes(endpoint, env["VITALSTREAM_ARCHIVE_BUCKET"])
        finally:
            proxy.stop()
    return row


def _hold_leases(replicas: ReplicaSet, timeout_s: float = 60.0) -> None:
    """Until every shard's lease is held (the takes done), and one lease round more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and replicas.scrape().leases < SHARDS:
        time.sleep(0.5)
    time.sleep(2.0)


def _archive_bytes(endpoint: str, bucket: str) -> int:
    """Bytes of the archive files (gzip JSON Lines) in ``bucket``."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        total += sum(o["Size"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl.gz"))
    return total


def _publish(kinesis: object, stream: str, devices: int, duration_ms: int, row: CostRow) -> int:
    """Publish the fleet in real time; returns the mean payload bytes of a record."""
    sizes: list[int] = []
    start_ms = int(time.time() * 1000)
    fleet = Fleet(devices, 1, start_ms, start_ms + duration_ms)
    publisher = KinesisPublisher(kinesis, stream)
    row.started = time.monotonic()
    done = threading.Event()

    def run() -> None:
        tick: list[Message] = []
        try:
            for sends, low, high in paced(fleet, realtime=True, stop=done):
                if low == 0:
                    tick = sends.messages()
                report = publisher.publish(tick[low:high])
                row.sent += report.sent
                sizes.extend(len(message.payload) for message in tick[low:high])
        finally:
            publisher.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    return round(sum(sizes) / max(len(sizes), 1))


def _drain(replicas: ReplicaSet, row: CostRow, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and replicas.scrape().settled < row.sent:
        time.sleep(1.0)
    row.settled = replicas.scrape().settled
    row.run_s = time.monotonic() - row.started


def print_cost(rows: list[CostRow], devices: int, duration_ms: int) -> None:
    print(
        f"\n(3) AWS calls per 1,000 records: {devices:,} devices (1 event / 5 s each) for "
        f"{duration_ms / 1000:.0f} s, {SHARDS} shards, {REPLICAS} replicas; counted by a proxy in front "
        "of the emulator;\nfigures per 1,000 records settled; rec/s from the fleet's start until drained"
    )
    header = (
        f"{'':12}{'settled':>9}{'sink writes':>13}{'lease writes':>14}{'S3 PUTs':>9}"
        f"{'BatchGet':>10}{'all calls':>11}{'rec/s':>8}"
    )
    print(header)
    for row in rows:
        print(
            f"{row.label:12}{row.settled:>9,}{row.per_k(row.sink_writes):>13.1f}"
            f"{row.per_k(row.writes[row.tables['leases']]):>14.1f}"
            f"{row.per_k(row.calls[('s3', 'PutObject')]):>9.2f}"
            f"{row.per_k(row.calls[('dynamodb', 'BatchGetItem')]):>10.2f}"
            f"{row.per_k(sum(row.calls.values())):>11.1f}{row.settled / max(row.run_s, 1e-9):>8.1f}"
        )
    print(
        "DynamoDB capacity units per 1,000 records (reported: the emulator's ConsumedCapacity; estimated: "
        "one unit per item where a response carried none)"
    )
    for row in rows:
        units = RequestCounts(capacity_units=row.units)
        figures = ", ".join(
            f"{kind} {row.per_k(units.units(kind, source)):.1f} {source}"
            for kind in (Kind.WRITE, Kind.READ)
            for source in (Source.REPORTED, Source.ESTIMATED)
        )
        print(f"{row.label:12}{figures}")
    as_of = list_prices().as_of
    for row in rows:
        counts = RequestCounts(dict(row.calls), dict(row.writes), dict(row.reads))
        at_fleet = priced(PerThousand.of(counts, row.settled), "consumer", FLEET_DEVICES)
        top = at_fleet.biggest()
        print(
            f"{row.label}: all in at {FLEET_DEVICES:,} devices (one sample per message every 5 s over IoT "
            f"Core; list prices of {as_of}): ${at_fleet.total:,.0f}/month, the biggest line {top.service} "
            f"{top.item} ${top.usd_per_month:,.0f}"
        )
    if len(rows) == 2 and rows[0].sink_writes:
        before, after = rows
        print(
            f"ratio after/before: sink writes {after.sink_writes / max(before.sink_writes, 1):.3f}, "
            f"all calls {sum(after.calls.values()) / max(sum(before.calls.values()), 1):.3f}"
        )
    for row in rows:
        if row.own_calls is not None and row.own_writes is not None:
            calls = f"{row.own_calls:,} vs {row.proxy_calls:,} ({_gap(row.own_calls, row.proxy_calls)})"
            writes = f"{row.own_writes:,} vs {row.proxy_writes:,} ({_gap(row.own_writes, row.proxy_writes)})"
            print(f"{row.label}: own count vs the proxy's, same moment: calls {calls}, item writes {writes}")


def _gap(own: int, outside: int) -> str:
    return f"{100 * (own - outside) / max(outside, 1):+.1f} %"


def run_cost(
    baseline: str, devices: int, duration_ms: int, idle_ms: int = 30_000, json_path: Path = MEASURED_JSON
) -> list[CostRow]:
    """Both sides with the same idle phase first (so the printed comparison stays like for like); this
    tree's measurement is merged into ``json_path``."""
    rows = []
    tree = baseline_tree(baseline)
    try:
        rows.append(cost_point("before", tree, devices, duration_ms, Measurement(), idle_ms / 1000))
    finally:
        drop_tree(tree)
    measured = Measurement()
    # the product's default file age (VITALSTREAM_ARCHIVE_FILE_MAX_AGE_MS): the replicas run with defaults
    measured.setup = {"devices": devices, "shards": SHARDS, "replicas": REPLICAS, "file_max_age_s": 60}
    rows.append(cost_point("after", None, devices, duration_ms, measured, idle_ms / 1000))
    print_cost(rows, devices, duration_ms)
    entry = measured.entry()
    source = (
        f"python bench/consumer.py --cost --cost-devices {devices} --cost-duration {duration_ms // 1000}s "
        f"--cost-idle {idle_ms // 1000}s --baseline {baseline}: consumer mode, {SHARDS} shards, {REPLICAS} "
        f"replicas (per_second is for all of them), embedded emulator (MiniStack) behind a counting "
        f"proxy, one machine; " + "; ".join(measured.notes)
    )
    write_measured(json_path, "consumer", entry, source)
    print(f"\nmeasured inputs written to {json_path}:\n{json.dumps(entry, indent=2)}\n{source}")
    return rows
