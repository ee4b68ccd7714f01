"""Throughput of the processing core against a naive reference and a decode-only floor, on one core.

    python bench/core.py                           # 100,000 records, 10,000 devices (the documented run)
    python bench/core.py --records 20000 --devices 2000 --repeat 2   # a quick look

All three paths take the same Lambda-shaped events (``Records[].kinesis.data`` base64 JSON, one
event per batch) and are timed best-of-``--repeat``, each repetition from empty device state:

(a) core: ``records_from_lambda_event`` + ``decode_records`` + ``process_batch`` + ``to_json`` of
    every processed record, device states carried across batches;
(b) reference: ``json.loads`` + a pydantic v2 model with the same rules + the same ``Detector`` per
    record + ``json.dumps`` of the enriched dict;
(c) floor: base64 + ``msgspec.json.decode`` to a dict, nothing else.

It also reports the Lambda shim's cold import time (fresh interpreter, median of 5, minus a bare
interpreter). Figures are printed, never asserted: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gc
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from service.core import (
    DEFAULT_CONFIG,
    Alert,
    Detector,
    DeviceState,
    decode_records,
    iso_ms,
    process_batch,
    records_from_lambda_event,
)

ROOT = Path(__file__).resolve().parents[1]
START_MS = int(datetime(2026, 11, 28, 2, 0, tzinfo=UTC).timestamp() * 1000)
FIRST_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
TARGET_RECORDS_PER_S = 300_000
TARGET_RATIO = 3.0
TARGET_IMPORT_MS = 300.0

Event = dict[str, Any]


# --- workload -------------------------------------------------------------------------------------


def build_events(records: int, devices: int, batch_size: int, seed: int = 7) -> list[Event]:
    """Lambda Kinesis events: samples every 5 s per device, devices interleaved as a stream mixes them."""
    rng = random.Random(seed)
    offsets = [rng.randrange(5_000) for _ in range(devices)]
    entries: list[dict[str, Any]] = []
    for i in range(records):
        tick, device = divmod(i, devices)
        sample = {
            "deviceId": f"wearable-{device:07d}",
            "timestamp": iso_ms(START_MS + tick * 5_000 + offsets[device]),
            "heartRate": rng.randint(55, 100),
            "steps": rng.choice((0, 0, 0, 4, 9)),
            "spo2": rng.randint(94, 99),
            "skinTemp": round(rng.uniform(33.0, 36.0), 1),
            "battery": rng.randint(20, 100),
            "seq": 10_000 + tick,
            "firmware": "3.2.1+build.4471",
            "model": "VS-Band-2",
        }
        data = json.dumps(sample, separators=(",", ":")).encode()
        sequence = str(FIRST_SEQUENCE + i)
        entries.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": sample["deviceId"],
                    "sequenceNumber": sequence,
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": (START_MS + tick * 5_000 + 800) / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/vitalstream-telemetry",
            }
        )
    return [{"Records": entries[i : i + batch_size]} for i in range(0, len(entries), batch_size)]


# --- (a) the core ---------------------------------------------------------------------------------


def run_core(events: list[Event], detector: Detector, now_ms: int) -> int:
    states: dict[str, DeviceState] = {}
    written = 0
    for event in events:
        framed = records_from_lambda_event(event)
        result = process_batch(decode_records(framed.records, framed.rejects), states, detector, now_ms)
        states.update(result.states)
        lines = [record.to_json() for record in result.processed]
        written += len(lines)
    return written


# --- (b) the naive reference ----------------------------------------------------------------------


class ReferenceTelemetry(BaseModel):  # field names are the wire contract's camelCase
    """The telemetry contract as a pydantic v2 model: what a straightforward implementation writes."""

    model_config = ConfigDict(extra="allow", strict=True)

    deviceId: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    timestamp: str
    heartRate: Annotated[int, Field(ge=0, le=300)]
    steps: Annotated[int, Field(ge=0)]
    spo2: Annotated[int, Field(ge=50, le=100)] | None = None
    battery: Annotated[int, Field(ge=0, le=100)] | None = None
    skinTemp: float | None = None
    seq: Annotated[int, Field(ge=0)] | None = None

    @field_validator("timestamp")
    @classmethod
    def _rfc3339_with_offset(cls, value: str) -> str:
        if datetime.fromisoformat(value).tzinfo is None:
            raise ValueError("timestamp needs an offset")
        return value


def run_reference(events: list[Event], detector: Detector, now_ms: int) -> int:
    states: dict[str, DeviceState] = {}
    processed_at = iso_ms(now_ms)
    alerts: list[Alert] = []
    written = 0
    for event in events:
        for entry in event["Records"]:
            kinesis = entry["kinesis"]
            try:
                obj = json.loads(base64.b64decode(kinesis["data"]))
                sample = ReferenceTelemetry.model_validate(obj)
            except (ValueError, binascii.Error):
                continue
            event_ms = int(datetime.fromisoformat(sample.timestamp).timestamp() * 1000)
            state = states.setdefault(sample.deviceId, DeviceState())
            opened = detector.observe(
                state, sample.deviceId, event_ms, sample.heartRate, sample.steps, sample.spo2, alerts
            )
            anomalies = [kind.value for kind in opened]
            status = anomalies[0] if anomalies else "NORMAL"
            obj.update(
                processedAt=processed_at,
                status="HIGH_HEART_RATE" if sample.heartRate > 140 else status,
                anomalies=anomalies,
                shardId=entry["eventID"].partition(":")[0],
                sequenceNumber=kinesis["sequenceNumber"],
                latencyMs=now_ms - event_ms,
            )
            json.dumps(obj)
            written += 1
    return written


# --- (c) the floor --------------------------------------------------------------------------------


def run_floor(events: list[Event], detector: Detector, now_ms: int) -> int:
    decode, a2b = msgspec.json.decode, binascii.a2b_base64
    written = 0
    for event in events:
        for entry in event["Records"]:
            decode(a2b(entry["kinesis"]["data"]))
            written += 1
    return written


# --- measurement ----------------------------------------------------------------------------------


def best_rate(path: Callable[[list[Event], Detector, int], int], events: list[Event], repeat: int) -> float:
    detector = Detector(DEFAULT_CONFIG)
    best = float("inf")
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = path(events, detector, START_MS + 86_400_000)
        best = min(best, time.perf_counter() - started)
    return count / best


def cold_import_ms(module: str, runs: int = 5) -> float:
    """Median wall time of a fresh interpreter importing ``module``, minus one that imports nothing."""

    def median_ms(code: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    return median_ms(f"import {module}") - median_ms("pass")


def shim_module() -> str:
    return "lambda_shim.handler" if (ROOT / "lambda_shim" / "handler.py").is_file() else "service.core"


def verdict(ok: bool) -> str:
    return "ok" if ok else "BELOW TARGET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per path; the best counts")
    args = parser.parse_args()

    events = build_events(args.records, args.devices, args.batch_size)
    # The fixture holds every event at once (Lambda holds one); keep the collector from rescanning
    # it during every measured path, or all three pay for an input no deployment ever holds.
    gc.collect()
    gc.freeze()
    payload = statistics.mean(len(base64.b64decode(e["kinesis"]["data"])) for e in events[0]["Records"])
    print(
        f"VitalStream core bench: {args.records:,} records, {args.devices:,} devices, "
        f"{len(events):,} events of {args.batch_size:,}, ~{payload:.0f}-byte payloads, best of {args.repeat}"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, msgspec {msgspec.__version__}, "
        f"pydantic {pydantic.VERSION}, one process, one core"
    )
    core = best_rate(run_core, events, args.repeat)
    reference = best_rate(run_reference, events, args.repeat)
    floor = best_rate(run_floor, events, args.repeat)
    print(f"(a) core   lambda event → decode → process → to_json  {core:>12,.0f} records/s", end="")
    print(f"   target ≥ {TARGET_RECORDS_PER_S:,}: {verdict(core >= TARGET_RECORDS_PER_S)}")
    print(f"(b) reference  json + pydantic v2 + detector + dumps  {reference:>12,.0f} records/s")
    print(f"(c) floor  base64 + msgspec decode to dict            {floor:>12,.0f} records/s")
    ratio = core / reference
    print(f"core / reference  {ratio:5.2f}x   target ≥ {TARGET_RATIO:.0f}x: {verdict(ratio >= TARGET_RATIO)}")
    print(f"core / floor      {core / floor:5.2f}x")
    module = shim_module()
    import_ms = cold_import_ms(module)
    note = "" if module == "lambda_shim.handler" else " (lambda_shim/handler.py not present yet)"
    print(
        f"cold import {module}{note}: {import_ms:.0f} ms (median of 5, minus bare interpreter)"
        f"   target ≤ {TARGET_IMPORT_MS:.0f} ms: {verdict(import_ms <= TARGET_IMPORT_MS)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
