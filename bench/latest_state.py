"""The coalesced latest-state writes: conditional UpdateItem (what ships) against BatchWriteItem, one run.

    python bench/latest_state.py [--devices 500] [--rounds 3]

The same device items (state snapshot + latest record, as the coalescer writes them) go to a fresh
device table on the embedded emulator, alternately: (a) ``DynamoDeviceStateStore.save`` — one
conditional ``UpdateItem`` per device, forward-only, fanned out over its threads; (b) ``BatchWriteItem``
of 25 ``PutRequest``s per call, unconditional. Printed per variant: calls, item writes (what DynamoDB
bills: one write unit per item either way), seconds and items/s, and the ratio (a)/(b).

BatchWriteItem cannot carry a condition, so it could move a device backwards (a zombie owner, a
replayed older state); the item writes it would save are none, only round trips. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from service.core import DeviceState, ProcessedRecord, encode_state
from service.core.records import padded_sequence
from service.runtime.accounting import RequestCounter
from service.runtime.adapters import DynamoDeviceStateStore
from service.runtime.adapters.dynamodb_state import latest_attributes
from service.tools.emulator import EmbeddedAws, use_emulator_credentials
from service.tools.provisioning import provision_stack
from tests.unit.builders import SEQ0, records, run, telemetry

REGION = "us-east-1"
BATCH_WRITE_LIMIT = 25


def items(devices: int, round_no: int) -> tuple[dict[str, DeviceState], dict[str, ProcessedRecord]]:
    batch = records(
        [telemetry(deviceId=f"dev-{i:05d}", seq=round_no) for i in range(devices)],
        SEQ0 + round_no * devices,
    )
    result = run(batch)
    return result.states, {p.device_id: p for p in result.processed}


def update_item(store: DynamoDeviceStateStore, devices: int, round_no: int) -> float:
    states, latest = items(devices, round_no)
    started = time.perf_counter()
    refused = store.save(states, latest)
    assert not refused
    return time.perf_counter() - started


def batch_write(client: Any, table: str, devices: int, round_no: int) -> float:
    """The same attributes as the store writes, as whole items (a put cannot keep other attributes)."""
    states, latest = items(devices, round_no)
    puts = [
        {
            "PutRequest": {
                "Item": {
                    "deviceId": {"S": d},
                    "state": {"B": encode_state(s)},
                    "shardId": {"S": s.last_shard},
                    "lastSeq": {"S": padded_sequence(s.last_sequence)},
                    "lastSubSeq": {"N": str(s.last_sub_sequence)},
                    **latest_attributes(latest[d]),
                }
            }
        }
        for d, s in states.items()
    ]
    started = time.perf_counter()
    for start in range(0, len(puts), BATCH_WRITE_LIMIT):
        pending = {table: puts[start : start + BATCH_WRITE_LIMIT]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_emulator_credentials()
    with EmbeddedAws() as endpoint:
        stack = provision_stack("bench-latest", endpoint_url=endpoint, region=REGION)
        table = stack.environment["VITALSTREAM_DEVICE_STATE_TABLE"]
        counted = {"update": RequestCounter(), "batch": RequestCounter()}
        clients = {}
        for name, counter in counted.items():
            clients[name] = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
            counter.attach(clients[name])
        store = DynamoDeviceStateStore(clients["update"], table)
        seconds: dict[str, list[float]] = {"update": [], "batch": []}
        for round_no in range(1, args.rounds + 1):  # alternate, so drift hits both alike
            seconds["update"].append(update_item(store, args.devices, round_no))
            seconds["batch"].append(batch_write(clients["batch"], table, args.devices, round_no))
    print(f"{args.devices} device items x {args.rounds} rounds on the embedded emulator")
    print(f"{'':34}{'calls':>8}{'item writes':>13}{'median s':>10}{'items/s':>9}")
    labels = {"update": "conditional UpdateItem (shipped)", "batch": "BatchWriteItem x25, unconditional"}
    for name, label in labels.items():
        counts = counted[name].snapshot()
        median = statistics.median(seconds[name])
        print(
            f"{label:34}{counts.calls():>8,}{sum(counts.item_writes.values()):>13,}"
            f"{median:>10.2f}{args.devices / median:>9.0f}"
        )
    ratio = statistics.median(a / b for a, b in zip(seconds["update"], seconds["batch"], strict=True))
    print(f"time ratio UpdateItem / BatchWriteItem, pair by pair (median): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
