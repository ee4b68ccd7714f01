"""End to end on the embedded stack: the largest fleet one machine sustains, in one run.

    python bench/e2e.py                                   # 10,000 devices for 10 min (consumer mode),
                                                          # then Lambda mode at 4,000, 8,000, 10,000 for 2 min
    python bench/e2e.py --devices 2000 --duration 2m --lambda-devices 1000

Each row is a whole demo pipeline in a fresh embedded emulator (the default engine, MiniStack): the
stack provisioned from infra/template.yaml, the fleet publishing 1 event / 5 s per device in real time
from this process, processed in consumer mode by ``--replicas`` ``vitalstream consume`` processes
(archive files at the product's default age) or in Lambda mode by the local event source mapping
invoking the shim in a worker process per shard (``shim-1``, ``shim-2``; tumbling windows as the
template sets them, idle shards polled once a second as Lambda polls). The report is read back from
the sinks: lost and duplicate effects, detection latency (device timestamp → alert published: the
consumers' histogram; in Lambda mode the alert's arrival in the demo's SQS subscription), archive
latency (device timestamp → file uploaded; consumer mode) and sink latency (device timestamp → every
sink acknowledged). CPU is sampled from /proc once a second for every
process while the fleet publishes: mean cores and the busiest 10 s ("peak"); a process whose peak
reaches ~1 core is saturated (CPython runs one thread at a time). Prints; never asserts.

Targets (consumer mode): lost 0, duplicate effects 0, detection p50 ≤ 250 ms and p99 ≤ 1 s, archive
p99 within the file age (+5 s for the upload). Lambda mode: lost 0, duplicate effects 0, detection
p99 ≤ 2 s across the window closes the run spans. A size is sustained (kept pace) when nothing is lost or
duplicated, every record settled and sink latency p99 stayed within 10 s (no backlog built up).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from processes import CpuSampler, ProcessCpu  # bench/ is on sys.path (above)

from service.cli.args import parse_duration_ms
from service.runtime.config import ConsumerSettings
from service.tools.demo.report import DemoReport
from service.tools.demo.session import DemoSession
from service.tools.emulator import Engine, use_emulator_credentials

TARGET_P50_MS, TARGET_P99_MS = 250, 1_000
LAMBDA_TARGET_P99_MS = 2_000  # Lambda polls a shard once a second
UPLOAD_ALLOWANCE_MS = 5_000
KEPT_PACE_MS = 10_000
SATURATED_CORES = 0.9
PEAK_WINDOW_S = 10.0
PROCESS_NAMES = {
    b"ministack_server": "emulator",
    b"service.tools.emulator": "emulator",
    b"\x00consume": "replica-",
    b"multiprocessing.spawn": "shim-",  # the local event source mapping's worker per shard
}
COLUMNS = ("emulator", "replica-1", "replica-2", "shim-1", "shim-2", "bench")


@dataclass(frozen=True)
class Row:
    mode: str
    devices: int
    duration_s: float
    report: DemoReport
    cpu: dict[str, ProcessCpu]
    fleet_ended: float  # monotonic time: CPU is reported while the fleet ran, not for the read-back

    def cores(self, name: str) -> tuple[float, float]:
        """Mean and peak cores of process ``name`` while the fleet ran."""
        cpu = self.cpu[name]
        return cpu.cores(self.fleet_ended), cpu.peak_cores(PEAK_WINDOW_S, self.fleet_ended)

    @property
    def kept_pace(self) -> bool:
        """Every record settled, none later than ``KEPT_PACE_MS`` after its device sent it."""
        r = self.report
        return r.unacknowledged == 0 and (r.latency.p99_ms or 0) <= KEPT_PACE_MS

    def verdict(self, file_age_ms: int) -> str:
        r = self.report
        missed = []
        if r.lost or r.duplicate_effects:
            missed.append(f"lost {r.lost}, duplicates {r.duplicate_effects}")
        if not self.kept_pace:
            missed.append("fell behind")
        detection = r.detection_latency
        if self.mode == "consumer":
            if detection is None or detection.count == 0:
                missed.append("no alert to time")
            elif (detection.p50_ms or 0) > TARGET_P50_MS:
                missed.append(f"detection p50 > {TARGET_P50_MS} ms")
            if detection is not None and (detection.p99_ms or 0) > TARGET_P99_MS:
                missed.append(f"detection p99 > {TARGET_P99_MS} ms")
            archive = r.archive_latency
            if archive is None or (archive.p99_ms or 0) > file_age_ms + UPLOAD_ALLOWANCE_MS:
                missed.append("archive p99 past the file age")
        elif detection is None or detection.count == 0:
            missed.append("no alert to time")
        elif (detection.p99_ms or 0) > LAMBDA_TARGET_P99_MS:
            missed.append(f"detection p99 > {LAMBDA_TARGET_P99_MS} ms")
        if not missed:
            return "met"
        busiest = max(self.cpu, key=lambda name: self.cores(name)[1], default=None)
        if busiest is not None and self.cores(busiest)[1] >= SATURATED_CORES:
            missed.append(f"{busiest} saturated ({self.cores(busiest)[1]:.2f} cores at peak)")
        return "MISSED: " + "; ".join(missed)


def run_one(mode: str, devices: int, duration_ms: int, args: argparse.Namespace) -> Row:
    with (
        DemoSession(
            args.shards, log=lambda line: print(f"  {line}", file=sys.stderr), engine=args.emulator
        ) as s,
        CpuSampler(PROCESS_NAMES) as sampler,
    ):
        report = s.run(
            devices=devices,
            duration_ms=duration_ms,
            seed=args.seed,
            share=args.share,
            batch_size=500,
            mode=mode,
            replicas=args.replicas,
            file_age_ms=None,
        )
    fleet_ended = (s.fleet_started or sampler.started) + duration_ms / 1000
    return Row(mode, devices, duration_ms / 1000, report, sampler.by_name(), fleet_ended)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_table(rows: list[Row], file_age_ms: int) -> None:
    cpu_heads = " ".join(f"{name + ' cpu':>17}" for name in COLUMNS)
    print(
        f"\n{'mode':<9}{'devices':>8}{'events/s':>9}{'run s':>7}{'lost':>6}{'dups':>5}"
        f"{'detect p50':>11}{'p99':>7}{'archive p50':>12}{'p99':>8}{'sinks p99':>10}  {cpu_heads}"
    )
    for row in rows:
        r = row.report
        detection, archive = r.detection_latency, r.archive_latency
        cpus = " ".join(
            "{:>8.2f} (pk {:.2f})".format(*row.cores(n)) if n in row.cpu else f"{'-':>17}" for n in COLUMNS
        )
        latencies = (
            detection and detection.p50_ms,
            detection and detection.p99_ms,
            archive and archive.p50_ms,
            archive and archive.p99_ms,
        )
        d50, d99, a50, a99 = (ms(value) for value in latencies)
        print(
            f"{row.mode:<9}{row.devices:>8,}{r.sent / row.duration_s:>9,.0f}{r.duration_s:>7.0f}{r.lost:>6}"
            f"{r.duplicate_effects:>5}{d50:>11}{d99:>7}{a50:>12}{a99:>8}{ms(r.latency.p99_ms):>10}  {cpus}"
        )
        verdict, calls, writes = row.verdict(file_age_ms), r.aws_calls_per_1k, r.dynamodb_item_writes_per_1k
        print(
            f"{'':<9}{verdict}; {r.alert_messages} alerts; per 1K records: {calls:.1f} calls, "
            f"{sum(writes.values()):.1f} DynamoDB item writes, {r.s3_puts_per_1k:.2f} S3 PUTs"
        )
    met = [row.devices for row in rows if row.mode == "lambda" and row.verdict(file_age_ms) == "met"]
    if any(row.mode == "lambda" for row in rows):
        print(f"Lambda mode's largest fleet meeting its targets: {max(met, default=0):,} devices")
    print(
        f"cpu: mean cores while the fleet ran (pk: busiest {PEAK_WINDOW_S:.0f} s); bench = this process: "
        "the fleet, PutRecords, alert read-back (and the event source mapping's polling in Lambda mode); "
        "shim-N: a shard's Lambda worker"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, nargs="*", default=[10_000], help="consumer-mode fleets")
    parser.add_argument("--duration", default="10m", help="consumer-mode fleet run time (default 10m)")
    parser.add_argument("--lambda-devices", type=int, nargs="*", default=[4_000, 8_000, 10_000])
    parser.add_argument("--lambda-duration", default="2m")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--share", type=float, default=0.01, help="share of devices per anomaly type")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--emulator", type=Engine, default=Engine.MINISTACK, choices=list(Engine))
    args = parser.parse_args()
    use_emulator_credentials()
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    file_age_ms = ConsumerSettings.model_fields["archive_file_max_age_ms"].default
    plan = [("consumer", n, parse_duration_ms(args.duration)) for n in args.devices]
    plan += [("lambda", n, parse_duration_ms(args.lambda_duration)) for n in args.lambda_devices]
    print(
        f"{len(plan)} runs on the embedded emulator ({args.emulator}), {args.shards} shards, 1 event / 5 s "
        f"per device, {args.share:.0%} of devices per anomaly type; consumer mode with {args.replicas} "
        f"replicas, archive files every {file_age_ms // 1000} s",
        flush=True,
    )
    rows = []
    for mode, devices, duration_ms in plan:
        print(f"{mode} mode, {devices:,} devices for {duration_ms / 1000:.0f} s ...", flush=True)
        rows.append(run_one(mode, devices, duration_ms, args))
        print_table(rows[-1:], file_age_ms)
    print_table(rows, file_age_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
