"""The Kubernetes-mode consumer (``vitalstream consume``) on the embedded stack: shard scaling and latency.

    python bench/consumer.py                                     # the documented run (≈ 10 minutes)
    python bench/consumer.py --shards 1 4 --records 1000 --devices 100 --duration 20s   # a quick look
    python bench/consumer.py --skip-latency                      # shard scaling only

(1) **Shard scaling** (``--shards``, default 1 4 16 64). Per shard count: a fresh embedded emulator
(its default engine, MiniStack, in its own process: every point starts from empty tables and an idle
emulator, so no point pays for an earlier one's data or leftover work), the stack provisioned with
that many shards, and the same ``--records`` (default 4,000) telemetry records from
``--drain-devices`` (default 2,000) devices pre-loaded, spread over every shard by partition key. Then:

- ``read+core``: in this process, one ``PollingReader`` per shard reads every record back (aioboto3,
  the consumer's own reader) and ``decode_records`` + ``process_batch`` run on them, no sinks: the
  consumer's ceiling without the emulator's DynamoDB, S3, SNS and SQS;
- one ``vitalstream consume`` process (``ReplicaSet`` with one replica, real sinks) is started and
  timed until ``vitalstream_records_total`` {processed, rejected, duplicate} reaches the records
  loaded. Printed: seconds from process start to ready, to every lease held and to drained;
  records/s from ready to drained; leases held (must equal the shard count); the process's RSS
  (VmRSS) at the end; CPU seconds of the consumer and of the emulator over the drain.

(2) **Latency under steady load** (``--devices``, default 200 500 1000, 1 event / 5 s each, in real
time for ``--duration``, default 60 s, into ``--latency-shards``, default 2): a fresh emulator per
size, one consumer process holding every lease before the fleet starts, the fleet publishing from a
thread; then up to ``--backlog-timeout`` (60 s) for the backlog. Printed: event-to-sink p50/p95/p99 from the
consumer's histogram (``Scrape.latency()``, bucket-interpolated), records/s, the largest backlog
seen, whether it kept pace (run ≤ 1.1 x fleet duration and nothing left unsettled), mean
``vitalstream_batch_seconds`` and records per batch, and the CPU the emulator and the consumer used
per second of the run (the emulator is one Python process: ≈ 1.0 is saturated). Latency is measured from
the device's own timestamp, and the simulator's device clocks are skewed by up to ±0.4 s.

Then a **probe batch** per size, with the consumer stopped: the records-per-batch of that run, fresh
devices, through the same ``Pipeline`` the consumer builds (``build_pipeline``) with every sink call
timed, so the table says where a batch's time goes on this emulator.

(3) **Calls per 1,000 records** (``--cost``, see ``consumer_cost.py``): 500 devices at one event / 5 s
onto 2 shards with 2 replicas, counted by a proxy in front of the emulator, for this tree and for
``--baseline`` (default: the last commit with one device-state write per record and one S3 object per
batch), side by side.

Prints; never asserts. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import boto3
from consumer_cost import run_cost  # bench/ is on sys.path (above)
from consumer_measured import MEASURED_JSON
from processes import cpu_seconds, status_kib

from service.cli.args import parse_duration_ms
from service.core import Detector, KinesisRecord, decode_records, process_batch
from service.runtime.adapters.kinesis_writer import KinesisPublisher
from service.runtime.composition import build_pipeline
from service.runtime.config import ConsumerSettings
from service.runtime.consumer.reader import PollingReader
from service.runtime.pipeline import Pipeline
from service.runtime.publishing import Message, PublishReport
from service.tools.demo.replicas import ReplicaSet, Scrape
from service.tools.emulator import EmbeddedAws, use_emulator_credentials
from service.tools.provisioning import provision_stack
from simulator.fleet import Fleet
from simulator.pacing import paced

# The last commit of the per-batch consumer: a state read and write per device per batch, one S3
# object per batch (issue: fleet-scale sinks).
COST_BASELINE = "ce7baa571f8139313bf9896c662ae7996e9bd102"

REGION = "us-east-1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGET_P50_MS, TARGET_P99_MS = 150, 400


# --- processes ------------------------------------------------------------------------------------


def settings_from(env: Mapping[str, str]) -> ConsumerSettings:
    """The settings a consumer started with ``env`` reads (without touching this process's environment)."""
    return ConsumerSettings(**{k.removeprefix("VITALSTREAM_").lower(): v for k, v in env.items()})


# --- the stack ------------------------------------------------------------------------------------


class Stack:
    """A fresh emulator with the stack provisioned; boto3 clients for the bench's own calls."""

    def __init__(self, name: str, shards: int) -> None:
        self.name, self.shards = name, shards
        self.emulator = EmbeddedAws()

    def __enter__(self) -> Stack:
        endpoint = self.emulator.start()
        result = provision_stack(
            self.name, endpoint_url=endpoint, region=REGION, parameters={"ShardCount": str(self.shards)}
        )
        self.env = dict(result.environment) | {"VITALSTREAM_ENDPOINT_URL": endpoint}
        self.stream = self.env["VITALSTREAM_STREAM_NAME"]
        self.kinesis = boto3.client("kinesis", region_name=REGION, endpoint_url=endpoint)
        assert self.emulator.pid is not None
        self.emulator_pid = self.emulator.pid
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()

    def consumers(self, extra: Mapping[str, str] | None = None) -> ReplicaSet:
        log_dir = Path(tempfile.mkdtemp(prefix=f"vitalstream-bench-{self.name}-"))
        return ReplicaSet(self.env | dict(extra or {}), log_dir, name="bench")


def fleet_messages(devices: int, records: int, start_ms: int, seed: int = 1) -> list[Message]:
    """About ``records`` messages: whole ticks (one sample per device per 5 s) of ``devices`` devices."""
    ticks = max(1, round(records / devices))
    fleet = Fleet(devices, seed, start_ms, start_ms + ticks * 5_000)
    messages = [m for sends in fleet.ticks() for m in sends.messages()]
    return messages[:records]


# --- (1) shard scaling ----------------------------------------------------------------------------


@dataclass
class DrainRow:
    shards: int
    loaded: int
    min_per_shard: int
    max_per_shard: int
    read_rate: float
    core_rate: float
    ready_s: float = 0.0
    leases_s: float | None = None
    drained_s: float | None = None
    settled: int = 0
    leases: int = 0
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    consumer_cpu_s: float = 0.0
    emulator_cpu_s: float = 0.0
    batches: int = 0
    batch_mean_s: float = 0.0
    exit_code: int | None = None

    @property
    def rate(self) -> float:
        if self.drained_s is None or self.drained_s <= self.ready_s:
            return 0.0
        return self.settled / (self.drained_s - self.ready_s)


async def read_and_process(
    env: Mapping[str, str], shard_ids: list[str]
) -> tuple[dict[str, int], float, float]:
    """Every shard read to its tip by the consumer's ``PollingReader`` (all shards at once, one event
    loop), then ``decode_records`` + ``process_batch`` per shard; no sinks.

    Returns records per shard, read records/s (wall) and core records/s (wall, one thread)."""
    import aioboto3  # noqa: PLC0415 - as the consumer does

    settings = settings_from(env)
    detector = Detector(settings.detection)
    session = aioboto3.Session()
    async with session.client("kinesis", region_name=REGION, endpoint_url=settings.endpoint_url) as kinesis:

        async def one(shard_id: str) -> list[KinesisRecord]:
            reader = PollingReader(kinesis, settings.stream_name, shard_id, "TRIM_HORIZON", 10_000)
            records: list[KinesisRecord] = []
            while True:
                result = await reader.read()
                records.extend(result.records)
                if not result.records or not result.millis_behind:
                    return records

        await kinesis.list_shards(StreamName=settings.stream_name)  # connect before the clock starts
        started = time.perf_counter()
        batches = await asyncio.gather(*(one(shard) for shard in shard_ids))
        read_s = time.perf_counter() - started
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    for records in batches:
        if records:
            process_batch(decode_records(records), {}, detector, now_ms)
    core_s = time.perf_counter() - started
    total = sum(map(len, batches))
    counts = {shard: len(records) for shard, records in zip(shard_ids, batches, strict=True)}
    return counts, total / read_s, total / core_s


def drain_point(shards: int, records: int, devices: int, timeout_s: float) -> DrainRow:
    with Stack(f"bench-drain-{shards}", shards) as stack:
        messages = fleet_messages(devices, records, int(time.time() * 1000) - 60_000)
        report = KinesisPublisher(stack.kinesis, stack.stream).publish(messages)
        shard_ids = sorted(s["ShardId"] for s in stack.kinesis.list_shards(StreamName=stack.stream)["Shards"])
        per_shard, read_rate, core_rate = asyncio.run(read_and_process(stack.env, shard_ids))
        row = DrainRow(
            shards, report.sent, min(per_shard.values()), max(per_shard.values()), read_rate, core_rate
        )
        replicas = stack.consumers()
        emulator_cpu = cpu_seconds(stack.emulator_pid)
        started = time.monotonic()
        (replica,) = replicas.start(1)
        replicas.wait_ready(timeout_s=120)
        row.ready_s = time.monotonic() - started
        deadline = started + timeout_s
        scrape = Scrape([])
        while time.monotonic() < deadline and replica.running:
            scrape = Scrape.of(replica)
            now = time.monotonic() - started
            if row.leases_s is None and scrape.leases >= shards:
                row.leases_s = now
            if scrape.settled >= row.loaded:
                row.drained_s = now
                break
            time.sleep(0.2)
        row.settled, row.leases = scrape.settled, scrape.leases
        pid = replica.process.pid
        row.rss_mib = status_kib(pid, "VmRSS") / 1024
        row.hwm_mib = status_kib(pid, "VmHWM") / 1024
        row.consumer_cpu_s = cpu_seconds(pid)
        row.emulator_cpu_s = cpu_seconds(stack.emulator_pid) - emulator_cpu
        row.batches = int(scrape.total("vitalstream_batch_seconds_count"))
        row.batch_mean_s = scrape.total("vitalstream_batch_seconds_sum") / max(row.batches, 1)
        row.exit_code = replicas.stop().get(replica.worker_id)
    return row


def print_drain(rows: list[DrainRow], records: int, devices: int) -> None:
    print(
        f"\n(1) shard scaling: {records:,} records from {devices:,} devices pre-loaded, one consumer process,"
        " real sinks, fresh emulator per point"
    )
    print(
        f"{'shards':>6} {'rec/shard':>10} {'read/s':>8} {'core/s':>8} {'ready s':>8} {'leases s':>9} "
        f"{'drained s':>10} {'rec/s':>6} {'leases':>7} {'batches':>8} {'batch ms':>9} "
        f"{'RSS MiB':>8} {'peak MiB':>9} {'cpu cons':>9} {'cpu emul':>9} {'exit':>5}"
    )
    for r in rows:
        drained = f"{r.drained_s:.1f}" if r.drained_s is not None else f"no ({r.settled})"
        leases_s = f"{r.leases_s:.1f}" if r.leases_s is not None else "never"
        print(
            f"{r.shards:>6} {f'{r.min_per_shard}-{r.max_per_shard}':>10} {r.read_rate:>8,.0f} "
            f"{r.core_rate:>8,.0f} "
            f"{r.ready_s:>8.1f} {leases_s:>9} {drained:>10} {r.rate:>6.0f} {r.leases:>7} {r.batches:>8} "
            f"{r.batch_mean_s * 1000:>9.0f} {r.rss_mib:>8.0f} {r.hwm_mib:>9.0f} {r.consumer_cpu_s:>9.1f} "
            f"{r.emulator_cpu_s:>9.1f} {r.exit_code!s:>5}",
            flush=True,
        )
    print(
        "rec/s: settled records / (drained - ready). read/s: PollingReader over every shard, core/s: "
        "decode + process_batch, both in this process, no sinks. cpu: seconds over the drain"
    )


# --- (2) latency under steady load ----------------------------------------------------------------


class Feed:
    """A fleet publishing in real time from its own thread."""

    def __init__(self, fleet: Fleet, publisher: KinesisPublisher) -> None:
        self.fleet, self.publisher = fleet, publisher
        self.report = PublishReport()
        self.thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    def _run(self) -> None:
        tick: list[Message] = []
        for sends, low, high in paced(self.fleet, realtime=True):
            if low == 0:
                tick = sends.messages()
            self.report.add(self.publisher.publish(tick[low:high]))


@dataclass
class LatencyRow:
    devices: int
    shards: int
    sent: int = 0
    settled: int = 0
    run_s: float = 0.0
    fleet_s: float = 0.0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max_backlog: int = 0
    batches: int = 0
    batch_mean_s: float = 0.0
    emulator_cores: float = 0.0
    consumer_cores: float = 0.0
    retried: int = 0
    sink_errors: int = 0
    probe: dict[str, float] = field(default_factory=dict)
    probe_records: int = 0

    @property
    def kept_pace(self) -> bool:
        return self.settled >= self.sent and self.run_s <= 1.1 * self.fleet_s


class Timed:
    """A sink whose every method call adds its wall time to ``spent[label]``."""

    def __init__(self, inner: Any, label: str, spent: Counter[str]) -> None:
        self._inner, self._label, self._spent = inner, label, spent

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._spent[f"{self._label}.{name}"] += time.perf_counter() - started

        return timed


def probe_batch(env: Mapping[str, str], shard_id: str, size: int) -> dict[str, float]:
    """One batch of ``size`` records of ``size`` fresh devices through the consumer's pipeline, timed
    per sink call (seconds); ``total`` is the whole ``Pipeline.run``."""
    real = build_pipeline(settings_from(env), connections=16)
    spent: Counter[str] = Counter()
    pipeline = Pipeline(
        detector=real.detector,
        states=Timed(real.states, "state", spent),
        archive=Timed(real.archive, "archive", spent),
        alerts=Timed(real.alerts, "alerts", spent),
        dead_letters=Timed(real.dead_letters, "dead_letter", spent),
    )
    now_ms = int(time.time() * 1000)
    messages = fleet_messages(size, size, now_ms - 5_000, seed=99)

    def batch(prefix: bytes) -> list[KinesisRecord]:
        """Fresh device ids: no stored state, one conditional write per device, as in a run."""
        return [
            KinesisRecord(m.payload.replace(b'"wearable-', prefix), shard_id, str(10**20 + i), now_ms)
            for i, m in enumerate(messages)
        ]

    real.run(shard_id, batch(b'"warm-'), now_ms)  # connections and first-call costs, untimed
    records = batch(b'"probe-')
    started = time.perf_counter()
    pipeline.run(shard_id, records, now_ms)
    spent["total"] = time.perf_counter() - started
    return dict(spent)


def latency_point(devices: int, shards: int, duration_ms: int, drain_timeout_s: float) -> LatencyRow:
    row = LatencyRow(devices, shards)
    with Stack(f"bench-latency-{devices}", shards) as stack:
        replicas = stack.consumers()
        (replica,) = replicas.start(1)
        replicas.wait_ready(timeout_s=120)
        deadline = time.monotonic() + 60
        while Scrape.of(replica).leases < shards and time.monotonic() < deadline:
            time.sleep(0.2)
        start_ms = int(time.time() * 1000)
        fleet = Fleet(devices, 1, start_ms, start_ms + duration_ms)
        feed = Feed(fleet, KinesisPublisher(stack.kinesis, stack.stream))
        emulator_cpu, consumer_cpu = cpu_seconds(stack.emulator_pid), cpu_seconds(replica.process.pid)
        started = time.monotonic()
        feed.thread.start()
        scrape = Scrape([])
        ended: float | None = None
        while True:
            time.sleep(1.0)
            scrape = Scrape.of(replica)
            row.max_backlog = max(row.max_backlog, feed.report.sent - scrape.settled)
            if feed.thread.is_alive():
                continue
            ended = ended or time.monotonic()
            if scrape.settled >= feed.report.sent or time.monotonic() - ended > drain_timeout_s:
                break
        row.run_s = time.monotonic() - started
        row.fleet_s = duration_ms / 1000
        row.emulator_cores = (cpu_seconds(stack.emulator_pid) - emulator_cpu) / row.run_s
        row.consumer_cores = (cpu_seconds(replica.process.pid) - consumer_cpu) / row.run_s
        row.sent, row.settled = feed.report.sent, scrape.settled
        latency = scrape.latency()
        row.p50, row.p95, row.p99 = latency.p50_ms, latency.p95_ms, latency.p99_ms
        row.batches = int(scrape.total("vitalstream_batch_seconds_count"))
        row.batch_mean_s = scrape.total("vitalstream_batch_seconds_sum") / max(row.batches, 1)
        row.retried = int(scrape.total("vitalstream_records_total", outcome="retried"))
        row.sink_errors = int(scrape.total("vitalstream_sink_errors_total"))
        replicas.stop()
        row.probe_records = max(1, round(row.settled / max(row.batches, 1)))
        shard_id = stack.kinesis.list_shards(StreamName=stack.stream)["Shards"][0]["ShardId"]
        row.probe = probe_batch(stack.env, shard_id, row.probe_records)
    return row


def print_latency(rows: list[LatencyRow], duration_ms: int) -> None:
    shards = rows[0].shards if rows else 0
    print(
        f"\n(2) latency under steady load: 1 event / 5 s per device for {duration_ms / 1000:.0f} s in real "
        f"time, {shards} shards, one consumer process, fresh emulator per size"
    )
    print(
        f"{'devices':>7} {'ev/s':>5} {'sent':>6} {'settled':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'backlog':>8} {'run s':>6} {'batches':>8} {'rec/batch':>9} {'batch ms':>9} {'emul cpu':>9} "
        f"{'cons cpu':>9}  kept pace"
    )
    for r in rows:
        print(
            f"{r.devices:>7} {r.settled / r.run_s:>5.0f} {r.sent:>6} {r.settled:>7} {r.p50 or 0:>7.0f} "
            f"{r.p95 or 0:>7.0f} {r.p99 or 0:>7.0f} {r.max_backlog:>8} {r.run_s:>6.0f} {r.batches:>8} "
            f"{r.settled / max(r.batches, 1):>9.1f} {r.batch_mean_s * 1000:>9.0f} {r.emulator_cores:>9.2f} "
            f"{r.consumer_cores:>9.2f}  {'yes' if r.kept_pace else 'no'}"
            + (f" (retried {r.retried}, sink errors {r.sink_errors})" if r.retried or r.sink_errors else ""),
            flush=True,
        )
    print(f"target (issue, 10K devices, polling): p50 ≤ {TARGET_P50_MS} ms, p99 ≤ {TARGET_P99_MS} ms")
    print(
        "\nprobe batch (consumer stopped): one batch of that run's records/batch, one record per fresh device"
    )
    print(
        f"{'devices':>7} {'records':>7} {'total ms':>9} {'state.load':>11} {'state.save':>11} "
        f"{'alerts':>7} {'archive':>8} {'dlq':>5} {'core+rest':>10} {'save/rec ms':>12}"
    )
    for r in rows:
        p = r.probe
        sinks = sum(v for k, v in p.items() if k != "total")
        print(
            f"{r.devices:>7} {r.probe_records:>7} {p['total'] * 1000:>9.0f} "
            f"{p.get('state.load', 0) * 1000:>11.0f} {p.get('state.save', 0) * 1000:>11.0f} "
            f"{p.get('alerts.publish', 0) * 1000:>7.0f} {p.get('archive.write', 0) * 1000:>8.0f} "
            f"{p.get('dead_letter.put', 0) * 1000:>5.0f} {(p['total'] - sinks) * 1000:>10.0f} "
            f"{p.get('state.save', 0) * 1000 / r.probe_records:>12.1f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shards", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--records", type=int, default=4_000)
    parser.add_argument("--drain-devices", type=int, default=2_000)
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="(1): seconds to drain")
    parser.add_argument("--backlog-timeout", type=float, default=60.0, help="(2): after the fleet ends")
    parser.add_argument("--devices", type=int, nargs="*", default=[200, 500, 1000])
    parser.add_argument("--latency-shards", type=int, default=2)
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--cost", action="store_true", help="(3) only: calls per 1K records vs --baseline")
    parser.add_argument("--baseline", default=COST_BASELINE, help="(3): the commit to compare against")
    parser.add_argument("--cost-devices", type=int, default=500)
    parser.add_argument("--cost-duration", default="600s")
    parser.add_argument(
        "--cost-idle", default="30s", help="(3): the idle phase before the fleet (per-second rates)"
    )
    parser.add_argument(
        "--cost-json",
        type=Path,
        default=MEASURED_JSON,
        help="(3): the measured inputs of `vitalstream cost`, merged (its consumer entry replaced)",
    )
    args = parser.parse_args()
    use_emulator_credentials()
    print(
        f"VitalStream consumer bench on the embedded emulator (MiniStack), {os.cpu_count()} cores", flush=True
    )
    if args.cost:
        run_cost(
            args.baseline,
            args.cost_devices,
            parse_duration_ms(args.cost_duration),
            parse_duration_ms(args.cost_idle),
            args.cost_json,
        )
        return 0
    drain_rows = []
    for shards in args.shards:
        drain_rows.append(drain_point(shards, args.records, args.drain_devices, args.drain_timeout))
        print(f"  ... {shards} shards done", file=sys.stderr, flush=True)
    if drain_rows:
        print_drain(drain_rows, args.records, args.drain_devices)
    if args.skip_latency:
        return 0
    duration_ms = parse_duration_ms(args.duration)
    latency_rows = []
    for devices in args.devices:
        latency_rows.append(latency_point(devices, args.latency_shards, duration_ms, args.backlog_timeout))
        print(f"  ... {devices} devices done", file=sys.stderr, flush=True)
    print_latency(latency_rows, duration_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
