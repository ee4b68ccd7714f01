"""Factories for what the stream delivers: telemetry samples and Lambda Kinesis events."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# A real Kinesis sequence number (56 digits, > 2**63); later records count up from it.
FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136588898
SHARD_ID = "shardId-000000000000"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/vitalstream-telemetry"
T0_MS = int(datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp() * 1000)
# For samples put on a real stream, whose arrival time is the emulator's clock: three hours before this
# run started (whole minutes), so every sample is within the backfill horizon and none is in the future.
LIVE_T0_MS = (int(time.time()) // 60 - 180) * 60_000


def iso(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def sample(
    device_id: str, t_s: float, heart_rate: int, steps: int = 0, *, base_ms: int = T0_MS, **extra: Any
) -> dict[str, Any]:
    """One telemetry object, ``t_s`` seconds after ``base_ms``."""
    return {
        "deviceId": device_id,
        "timestamp": iso(base_ms + int(t_s * 1000)),
        "heartRate": heart_rate,
        "steps": steps,
        **extra,
    }


def payload(item: bytes | Mapping[str, Any]) -> bytes:
    return item if isinstance(item, bytes) else json.dumps(item).encode()


def sequence(index: int, first: int = FIRST_SEQUENCE) -> str:
    return str(first + index)


def arrival_ms(item: bytes | Mapping[str, Any], index: int) -> int:
    """When record ``index`` reached the stream: when its sample was taken (a device on time), or
    ``T0_MS + index`` for a payload without a readable timestamp."""
    newest = item["samples"][-1] if isinstance(item, Mapping) and item.get("samples") else item
    stamp = newest.get("timestamp") if isinstance(newest, Mapping) else None
    if isinstance(stamp, str):
        with contextlib.suppress(ValueError):
            return int(datetime.fromisoformat(stamp).timestamp() * 1000)
    return T0_MS + index


def kinesis_event(
    items: Sequence[bytes | Mapping[str, Any]],
    shard_id: str = SHARD_ID,
    first_sequence: int = FIRST_SEQUENCE,
    partition_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A Lambda event for a Kinesis event source; record i has sequence number ``first_sequence + i``."""
    records = []
    for index, item in enumerate(items):
        data = payload(item)
        key = partition_keys[index] if partition_keys else _partition_key(item)
        seq = sequence(index, first_sequence)
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key,
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode("ascii"),
                    "approximateArrivalTimestamp": arrival_ms(item, index) / 1000,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/vitalstream-lambda",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
        )
    return {"Records": records}


def tail(event: Mapping[str, Any], from_sequence: str) -> dict[str, Any]:
    """What Lambda redelivers after a partial failure: the records from ``from_sequence`` on."""
    start = int(from_sequence)
    return {"Records": [r for r in event["Records"] if int(r["kinesis"]["sequenceNumber"]) >= start]}


def sequences(event: Mapping[str, Any]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in event["Records"]]


def episode(
    device_id: str,
    start_s: float,
    end_s: float,
    heart_rate: int,
    every_s: float = 5,
    *,
    base_ms: int = T0_MS,
) -> list[dict[str, Any]]:
    """Samples every ``every_s`` from ``start_s`` to ``end_s`` inclusive at a constant heart rate, at rest."""
    count = int((end_s - start_s) / every_s) + 1
    return [sample(device_id, start_s + i * every_s, heart_rate, base_ms=base_ms) for i in range(count)]


def batched(samples: Sequence[Mapping[str, Any]], per_message: int) -> list[dict[str, Any]]:
    """One device's samples as the batched messages a device that buffers ``per_message`` sends."""
    device_id = samples[0]["deviceId"]
    without_id = [{k: v for k, v in s.items() if k != "deviceId"} for s in samples]
    return [
        {"deviceId": device_id, "samples": without_id[i : i + per_message]}
        for i in range(0, len(without_id), per_message)
    ]


def interleave(*streams: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge per-device sample lists by event time, keeping each device's order."""
    merged = [s for stream in streams for s in stream]
    return sorted(merged, key=lambda s: (s["timestamp"], s["deviceId"]))


def _partition_key(item: bytes | Mapping[str, Any]) -> str:
    if isinstance(item, Mapping):
        return str(item.get("deviceId", "unknown"))
    return "unknown"
