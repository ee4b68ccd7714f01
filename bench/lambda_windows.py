"""Lambda mode's measured inputs of ``vitalstream cost``: one windowed run, written to measured.json.

    python bench/lambda_windows.py [--devices 300] [--duration 260] [--share 0.02]
                                   [--cost-json service/tools/cost/measured.json] [--compare]

One demo session in Lambda mode (the local event source mapping + the shim, the embedded emulator, the
demo's fleet) with the template's mapping: ``TumblingWindowInSeconds``, ``BatchSize`` and
``MaximumBatchingWindowInSeconds`` as ``infra/template.yaml`` sets them (the demo's own mapping batches
for 0.5 s; here the template's window is put back). The shim's clients go through the counting proxy
(``tests/integration/fault_proxy.py``); the mapping reads Kinesis directly (that is Lambda's, not
billed to the function). The shim is measured from outside, by a thin wrapper around
``lambda_shim.handler.handler`` (``ShimMeter``), not by the product's code:

- invocations: every call of the handler, the windows' final invocations included (Lambda bills
  them), checked against the mapping's own counts (``EsmStats``);
- GB-seconds: each call's wall time rounded up to the next millisecond, as Lambda bills duration, times
  the template's ``MemorySize``;
- CPU seconds: the calling thread's CPU time of each call (``time.thread_time``); what the device-state
  writer's worker threads spend is not in it (its duration is in the GB-seconds);
- CloudWatch log bytes: what the shim writes to stdout and stderr while a call runs on that thread (its
  JSON lines), plus ``PLATFORM_LOG_BYTES`` per invocation for Lambda's own START, END and REPORT lines,
  an ESTIMATE (they are not written here);
- DynamoDB units: the proxy's capacity units (the emulator's ``ConsumedCapacity``, or one unit per
  item where it reports none; the share of each is in the source text); S3, SNS and SQS: the proxy's
  calls; archive bytes: the objects in the archive bucket; sample bytes: the mean Kinesis payload the
  shim was given.

Figures are per 1,000 records sent; the entry's ``setup`` (devices, records, duration_s, window_s,
batch_size) lets the calculator take out the one more window each device's run touches
(``service.tools.cost.data.per_record_shares``). Lambda keeps nothing per second (no leases):
``per_second`` is all 0. ``--compare`` also runs ``TumblingWindowInSeconds=0`` first and prints both.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from consumer_measured import MEASURED_JSON, write_measured

from lambda_shim import archive_handler as archive_shim
from lambda_shim import handler as shim
from service.core.window_handoff import decode_handoff
from service.runtime.accounting import CapacityKey, Kind, Source
from service.runtime.config import Settings
from service.tools.demo import session as demo_session
from service.tools.demo.session import DemoSession
from service.tools.emulator import use_emulator_credentials
from service.tools.esm import EventSourceMapping
from service.tools.provisioning.template import load_template
from service.tools.serverless import archive_mapping_config, mapping_config
from tests.integration.fault_proxy import FaultProxy

TABLE_OPS = ("BatchGetItem", "UpdateItem", "PutItem")
PLATFORM_LOG_BYTES = 300  # ESTIMATE: Lambda's START (~70 B), END (~50 B) and REPORT (~180 B) lines
MIB = 1024 * 1024


@dataclasses.dataclass
class Call:
    """One handler call: billed milliseconds, thread CPU, log bytes, records and their payload bytes."""

    billed_ms: int
    cpu_s: float
    log_bytes: int
    records: int
    payload_bytes: int
    final: bool


class ShimMeter:
    """Wraps the handler: times each call, reads its thread's CPU, counts what it logs."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self._handler = handler
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        records = event.get("Records") or []
        payload = sum(len(base64.b64decode(r["kinesis"]["data"])) for r in records)
        self._local.log_bytes = 0
        self._local.inside = True
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return self._handler(event, context)
        finally:
            elapsed_s, cpu_s = time.perf_counter() - wall, time.thread_time() - cpu
            self._local.inside = False
            call = Call(
                math.ceil(elapsed_s * 1000),
                cpu_s,
                self._local.log_bytes,
                len(records),
                payload,
                bool(event.get("isFinalInvokeForWindow")),
            )
            with self._lock:
                self.calls.append(call)

    def logged(self, text: str) -> None:
        """A write to stdout or stderr: counted when this thread is inside a handler call."""
        if getattr(self._local, "inside", False):
            self._local.log_bytes += len(text.encode("utf-8"))


class _Tee(io.TextIOBase):
    """A standard stream that tells the meters what it is given, then passes it on."""

    def __init__(self, stream: Any, *meters: ShimMeter) -> None:
        self._stream, self._meters = stream, meters

    def write(self, text: str) -> int:
        for meter in self._meters:
            meter.logged(text)
        return int(self._stream.write(text))

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def isatty(self) -> bool:
        return bool(self._stream.isatty())


def template_memory_mb() -> int:
    return int(load_template()["Parameters"]["MemorySize"]["Default"])


def _units(units: dict[CapacityKey, float], kind: Kind, source: Source | None = None) -> float:
    return sum(n for (_, k, s), n in units.items() if k == kind and source in (None, s))


@dataclasses.dataclass
class Run:
    """What one windowed run measured."""

    window_s: int
    batch_size: int
    batching_window_s: float
    memory_mb: int
    devices: int
    duration_s: int
    records: int = 0
    lost: int = 0
    duplicate_effects: int = 0
    calls: list[Call] = dataclasses.field(default_factory=list)
    archive_calls: list[Call] = dataclasses.field(default_factory=list)  # the archive role's function
    archive_batching_window_s: float = 0.0
    esm_invocations: int = 0
    esm_final_invocations: int = 0
    proxy_calls: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    capacity: dict[CapacityKey, float] = dataclasses.field(default_factory=dict)
    item_writes: dict[str, int] = dataclasses.field(default_factory=dict)
    archive_bytes: int = 0
    archive_objects: int = 0
    owed_writes: int = 0  # devices in the shards' last handoffs: their next windows write them

    def entry(self) -> dict[str, Any]:
        per = 1000 / max(self.records, 1)
        calls = self.proxy_calls
        delivered = sum(c.records for c in self.calls)
        both = self.calls + self.archive_calls  # two functions, billed alike
        billed_s = sum(c.billed_ms for c in both) / 1000
        per_1k = {
            "dynamodb_write_units": (_units(self.capacity, Kind.WRITE) + self.owed_writes) * per,
            "dynamodb_read_units": _units(self.capacity, Kind.READ) * per,
            "s3_put": calls.get(("s3", "PutObject"), 0) * per,
            "s3_get": calls.get(("s3", "GetObject"), 0) * per,
            "sns_publish": (calls.get(("sns", "Publish"), 0) + calls.get(("sns", "PublishBatch"), 0)) * per,
            "sqs_requests": sum(n for (service, _), n in calls.items() if service == "sqs") * per,
            "kinesis_get_records": 0.0,  # the mapping's reads are Lambda's, not the function's
            "cpu_seconds": sum(c.cpu_s for c in both) * per,
            "archive_bytes_gzip": self.archive_bytes * per,
            "lambda_invocations": len(both) * per,
            "lambda_gb_seconds": billed_s * self.memory_mb / 1024 * per,
            "cloudwatch_log_bytes": sum(c.log_bytes + PLATFORM_LOG_BYTES for c in both) * per,
        }
        return {
            "per_1k_records": {k: round(v, 4) for k, v in per_1k.items()},
            "per_second": dict.fromkeys(
                ("dynamodb_write_units", "dynamodb_read_units", "kinesis_get_records", "s3_put"), 0.0
            ),
            "memory_bytes": self.memory_mb * MIB,
            "sample_bytes": round(sum(c.payload_bytes for c in self.calls) / max(delivered, 1)),
            "setup": {
                "devices": self.devices,
                "records": self.records,
                "duration_s": self.duration_s,
                "window_s": self.window_s,
                "batch_size": self.batch_size,
            },
        }

    def notes(self) -> list[str]:
        finals = sum(c.final for c in self.calls)
        shim_log = sum(c.log_bytes for c in self.calls)
        regular = [c for c in self.calls if not c.final]
        notes = [
            f"{self.records:,} records sent, {self.lost} lost, {self.duplicate_effects} duplicate effects",
            f"{len(self.calls):,} handler calls ({finals} final invocations of windows; the mapping counted "
            f"{self.esm_invocations:,} + {self.esm_final_invocations} final), "
            f"{sum(c.records for c in regular) / max(len(regular), 1):.1f} records per batch",
            f"billed duration {sum(c.billed_ms for c in self.calls) / 1000:.1f} s (wall time per call "
            f"rounded up to 1 ms) x {self.memory_mb} MB (the template's MemorySize); CPU is the calling "
            "thread's",
            f"cloudwatch_log_bytes: the shim wrote {shim_log:,} bytes to stdout/stderr in all, plus "
            f"{PLATFORM_LOG_BYTES} bytes per invocation for Lambda's START/END/REPORT lines (an ESTIMATE)",
            f"DynamoDB write units include {self.owed_writes:,} writes the run's last window handoffs owe "
            "(the shards' next windows write those devices; one unit each)",
            f"archive: {self.archive_objects:,} objects, {self.archive_bytes:,} bytes, written by the "
            f"archive role's mapping ({len(self.archive_calls):,} calls of lambda_shim.archive_handler, "
            f"{sum(c.final for c in self.archive_calls)} of them final; batching window "
            f"{self.archive_batching_window_s:g} s; its calls are in the invocations, GB-seconds, CPU "
            "and logs)",
        ]
        for kind in (Kind.WRITE, Kind.READ):
            total = _units(self.capacity, kind) or 1.0
            reported = 100 * _units(self.capacity, kind, Source.REPORTED) / total
            notes.append(
                f"DynamoDB {kind} units {reported:.0f} % reported by the emulator's ConsumedCapacity, "
                f"{100 - reported:.0f} % estimated at one unit per item"
            )
        return notes


def measure(window: int, devices: int, duration_s: int, share: float) -> Run:
    template = mapping_config([f"TumblingWindowInSeconds={window}"])
    run = Run(
        window, template.batch_size, template.batching_window_s, template_memory_mb(), devices, duration_s
    )
    archive_template = archive_mapping_config()
    run.archive_batching_window_s = archive_template.batching_window_s
    meter, archive_meter = ShimMeter(shim.handler), ShimMeter(archive_shim.handler)
    mappings: list[EventSourceMapping] = []

    class TemplateMapping(EventSourceMapping):
        """The session's detection mapping with the template's batching window put back (the archive
        mapping has its template's from the session); kept for its stats."""

        def __init__(self, kinesis: Any, stream: str, invocation: Any, config: Any, **kwargs: Any) -> None:
            if invocation.function_arn != demo_session.ARCHIVER_ARN:
                config = dataclasses.replace(config, batching_window_s=template.batching_window_s)
                mappings.append(self)
            super().__init__(kinesis, stream, invocation, config, **kwargs)

    streams = sys.stdout, sys.stderr
    original_function, original_mapping = demo_session.LAMBDA_FUNCTION, demo_session.EventSourceMapping
    original_archive_function = demo_session.ARCHIVE_FUNCTION
    with DemoSession(2, lambda line: print(f"  {line}", file=sys.stderr)) as session:
        endpoint = os.environ["VITALSTREAM_ENDPOINT_URL"]
        proxy = FaultProxy(endpoint).start()
        os.environ["VITALSTREAM_ENDPOINT_URL"] = proxy.url  # the shim's clients only; the ESM reads direct
        shim._runtime.cache_clear()  # rebuild the shims' clients on the proxy
        archive_shim._role.cache_clear()
        demo_session.LAMBDA_FUNCTION = meter  # in this process, so the meter sees every call
        demo_session.ARCHIVE_FUNCTION = archive_meter  # ... and every archive-role call
        demo_session.EventSourceMapping = TemplateMapping  # type: ignore[misc]
        sys.stdout = _Tee(streams[0], meter, archive_meter)
        sys.stderr = _Tee(streams[1], meter, archive_meter)
        try:
            report = session.run(
                devices=devices,
                duration_ms=duration_s * 1000,
                seed=7,
                share=share,
                batch_size=template.batch_size,
                mode="lambda",
                tumbling_window_s=window,
                archive_batching_s=archive_template.batching_window_s,
            )
        finally:
            sys.stdout, sys.stderr = streams
            demo_session.LAMBDA_FUNCTION = original_function
            demo_session.ARCHIVE_FUNCTION = original_archive_function
            demo_session.EventSourceMapping = original_mapping  # type: ignore[misc]
            proxy.stop()
        bucket = os.environ["VITALSTREAM_ARCHIVE_BUCKET"]
        run.archive_objects, run.archive_bytes = _archive(endpoint, bucket, Settings().archive_prefix)
        run.owed_writes = _handed_on(endpoint, bucket, Settings().window_handoff_prefix)
    run.records, run.lost, run.duplicate_effects = report.sent, report.lost, report.duplicate_effects
    run.calls = list(meter.calls)
    run.archive_calls = list(archive_meter.calls)
    if mappings:
        run.esm_invocations = mappings[0].stats.invocations
        run.esm_final_invocations = mappings[0].stats.final_invocations
    with proxy._lock:
        run.proxy_calls = dict(proxy.calls)
        run.capacity = dict(proxy.capacity_units)
        run.item_writes = dict(proxy.item_writes)
    return run


def _archive(endpoint: str, bucket: str, prefix: str) -> tuple[int, int]:
    """Objects and bytes of the archive (under its prefix: the bucket holds the handoffs too)."""
    s3 = boto3.client("s3", region_name=demo_session.REGION, endpoint_url=endpoint)
    objects = total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            objects, total = objects + 1, total + int(obj["Size"])
    return objects, total


def _handed_on(endpoint: str, bucket: str, prefix: str) -> int:
    """Devices in the shards' window handoffs (each shard's last window's, still to be written)."""
    s3 = boto3.client("s3", region_name=demo_session.REGION, endpoint_url=endpoint)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    blobs = (s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing)
    return sum(len(decode_handoff(blob).devices) for blob in blobs)


def comparison(run: Run) -> dict[str, float]:
    per = 1000 / max(run.records, 1)
    table = next((t for t in run.item_writes if "device-state" in t), "")
    figures = {
        "records": float(run.records),
        "lost": float(run.lost),
        "AWS calls": sum(run.proxy_calls.values()) * per,
        "device-table item writes": run.item_writes.get(table, 0) * per,
        "invocations": len(run.calls) * per,
        "archive invocations": len(run.archive_calls) * per,
        "S3 PUTs": run.proxy_calls.get(("s3", "PutObject"), 0) * per,
    }
    for op in TABLE_OPS:
        figures[f"dynamodb {op}"] = run.proxy_calls.get(("dynamodb", op), 0) * per
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--duration", type=int, default=260, help="seconds of fleet (two windows or more)")
    parser.add_argument("--window", type=int, default=None, help="TumblingWindowInSeconds (the template's)")
    parser.add_argument("--share", type=float, default=0.02, help="share of devices per anomaly type")
    parser.add_argument("--cost-json", type=Path, default=MEASURED_JSON, help="where the entry is merged")
    parser.add_argument("--compare", action="store_true", help="also run TumblingWindowInSeconds=0 first")
    args = parser.parse_args()
    window = args.window if args.window is not None else mapping_config([]).tumbling_window_s
    use_emulator_credentials()
    before = measure(0, args.devices, args.duration, args.share) if args.compare else None
    run = measure(window, args.devices, args.duration, args.share)
    if before is not None:
        print(f"per 1,000 records ({args.devices} devices, {args.duration} s, 2 shards)")
        print(f"{'':32} {'window 0':>12} {f'window {window} s':>14}")
        for name, value in comparison(run).items():
            print(f"{name:32} {comparison(before)[name]:>12,.1f} {value:>14,.1f}")
    entry = run.entry()
    source = (
        f"python bench/lambda_windows.py --devices {args.devices} --duration {args.duration} "
        f"--share {args.share:g}: Lambda mode, 2 shards, the template's mapping (TumblingWindowInSeconds "
        f"{window}, BatchSize {run.batch_size}, MaximumBatchingWindowInSeconds {run.batching_window_s:g}), "
        f"the local event source mapping invoking the shim in-process through a measuring wrapper, "
        f"embedded emulator (MiniStack) behind a counting proxy, one machine; "
        + "; ".join(run.notes())
        + "; the calculator takes each device's one more window out of the state units "
        "(service.tools.cost.data.per_record_shares)."
    )
    write_measured(args.cost_json, "lambda", entry, source)
    print(f"\nmeasured inputs written to {args.cost_json}:\n{json.dumps(entry, indent=2)}\n{source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
