"""A stack, a stream, consumer replicas as real processes, a feed of numbered samples, and the read-back.

Every sample carries its device's own ``seq``, so the read-back can tell, per (device, seq): lost
(sent, not archived), duplicated (archived twice) and out of order (a device's samples archived in a
processing order other than their ``seq`` order, judged by each line's ``processedAt``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from service.tools.demo.replicas import ReplicaSet
from tests.integration.conftest import DUMMY_KEY, REGION, AwsStack

POISON = b'{"deviceId": "broken", "heartRate": '


def sample(device: str, seq: int, at_ms: int) -> bytes:
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    body = {"deviceId": device, "timestamp": stamp, "heartRate": 64 + seq % 7, "steps": 0, "spo2": 97}
    return json.dumps(body | {"seq": seq}).encode()


def _without_device_id(body: bytes) -> dict[str, Any]:
    """A sample as a batch carries it: its device is the envelope's."""
    return {k: v for k, v in json.loads(body).items() if k != "deviceId"}


def stream_env(aws: AwsStack, kinesis_endpoint: str, stream: str, lease_table: str) -> dict[str, str]:
    s = aws.settings
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "VITALSTREAM_REGION": REGION,
        "VITALSTREAM_ENDPOINT_URL": str(s.endpoint_url),
        "VITALSTREAM_KINESIS_ENDPOINT_URL": kinesis_endpoint,
        "VITALSTREAM_STREAM_NAME": stream,
        "VITALSTREAM_LEASE_TABLE": lease_table,
        "VITALSTREAM_ARCHIVE_BUCKET": s.archive_bucket,
        "VITALSTREAM_ARCHIVE_PREFIX": s.archive_prefix,
        "VITALSTREAM_DEVICE_STATE_TABLE": s.device_state_table,
        "VITALSTREAM_ALERT_HISTORY_TABLE": s.alert_history_table,
        "VITALSTREAM_ALERT_TOPIC_ARN": s.alert_topic_arn,
        "VITALSTREAM_DEAD_LETTER_TARGET": str(s.dead_letter_target),
        "VITALSTREAM_DEAD_LETTER_QUEUE_URL": s.dead_letter_queue_url,
        "VITALSTREAM_DEAD_LETTER_BUCKET": s.dead_letter_bucket,
        "VITALSTREAM_DEAD_LETTER_PREFIX": s.dead_letter_prefix,
        "VITALSTREAM_SHARD_SYNC_MS": "1000",
        # archive files (and so checkpoints) every 2 s of arrival time: the tests read the archive back;
        # device items at most every 5 s (the default is a minute)
        "VITALSTREAM_ARCHIVE_FILE_MAX_AGE_MS": "2000",
        "VITALSTREAM_LATEST_STATE_INTERVAL_MS": "5000",
        "VITALSTREAM_LOG_LEVEL": "INFO",
    }


@dataclass
class ReadBack:
    archived: Counter[tuple[str, int]]
    order_breaks: list[str]
    dead_letters: list[dict[str, Any]]

    def lost(self, sent: set[tuple[str, int]]) -> set[tuple[str, int]]:
        return sent - set(self.archived)

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.archived.values())


Key = tuple[str, int]  # (device, seq)


@dataclass
class Feed:
    """Numbered samples from ``devices`` devices at about ``rate`` per second, from a thread."""

    kinesis: Any
    stream: str
    devices: int
    rate: float
    per_message: int = 1  # samples per record: a device's samples in batches of this many
    sent: set[tuple[str, int]] = field(default_factory=set)
    positions: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)  # shard, sequence
    poison_sent: int = 0
    _next: dict[str, int] = field(default_factory=dict)
    _episode_clock: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def put(self, count: int, poison: int = 0) -> None:
        now = int(time.time() * 1000)
        numbered: list[tuple[str, int, bytes]] = []
        for i in range(count):
            device = f"device-{(len(self.sent) + len(numbered)) % self.devices:04d}"
            seq = self._next.get(device, 0) + 1
            self._next[device] = seq
            numbered.append((device, seq, sample(device, seq, now + i)))
        keyed = self._messages(numbered)
        keyed += [({"Data": POISON, "PartitionKey": f"poison-{i}"}, []) for i in range(poison)]
        self._put(keyed)
        self.poison_sent += poison

    def put_episode(self, device: str, count: int, heart_rate: int = 35, step_ms: int = 5_000) -> None:
        """``count`` samples of ``device`` at ``heart_rate``, ``step_ms`` apart in event time, in one put:
        a bradycardia episode held for ``count * step_ms`` of the device's own time."""
        seq0 = self._next.get(device, 0)
        start = self._episode_clock.get(device, int(time.time() * 1000) - count * step_ms)
        numbered = []
        for k in range(1, count + 1):
            body = json.loads(sample(device, seq0 + k, start + k * step_ms)) | {"heartRate": heart_rate}
            numbered.append((device, seq0 + k, json.dumps(body).encode()))
        self._put(self._messages(numbered))
        self._next[device] = seq0 + count
        self._episode_clock[device] = start + count * step_ms

    def _messages(self, numbered: list[tuple[str, int, bytes]]) -> list[tuple[dict[str, Any], list[Key]]]:
        """PutRecords entries with the (device, seq) each carries: one sample each, or each device's
        samples in batches of ``per_message`` (``{"deviceId", "samples": [...]}``)."""
        if self.per_message == 1:
            return [({"Data": body, "PartitionKey": d}, [(d, seq)]) for d, seq, body in numbered]
        by_device: dict[str, list[tuple[int, bytes]]] = {}
        for device, seq, body in numbered:
            by_device.setdefault(device, []).append((seq, body))
        out: list[tuple[dict[str, Any], list[Key]]] = []
        for device, items in by_device.items():
            for first in range(0, len(items), self.per_message):
                chunk = items[first : first + self.per_message]
                samples = [_without_device_id(body) for _, body in chunk]
                data = json.dumps({"deviceId": device, "samples": samples}).encode()
                out.append(({"Data": data, "PartitionKey": device}, [(device, seq) for seq, _ in chunk]))
        return out

    def _put(self, keyed: list[tuple[dict[str, Any], list[Key]]]) -> None:
        for start in range(0, len(keyed), 250):
            chunk = keyed[start : start + 250]
            while chunk:
                response = self.kinesis.put_records(StreamName=self.stream, Records=[e for e, _ in chunk])
                retry = []
                for (entry, keys), result in zip(chunk, response["Records"], strict=True):
                    if "ErrorCode" in result:
                        retry.append((entry, keys))
                    else:
                        position = (result["ShardId"], result["SequenceNumber"])
                        self.positions.update(dict.fromkeys(keys, position))
                        self.sent.update(keys)
                chunk = retry

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        tick = 0.5
        while not self._stop.wait(tick):
            self.put(max(1, round(self.rate * tick)))


class ConsumerRig:
    def __init__(self, aws: AwsStack, kinesis_endpoint: str, shards: int, log_dir: Path) -> None:
        self.aws = aws
        self.kinesis = boto3.client(
            "kinesis",
            region_name=REGION,
            endpoint_url=kinesis_endpoint,
            aws_access_key_id=DUMMY_KEY,
            aws_secret_access_key=DUMMY_KEY,
        )
        self.stream = f"telemetry-{uuid.uuid4().hex[:10]}"
        self.lease_table = f"leases-{uuid.uuid4().hex[:10]}"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        self.env = stream_env(aws, kinesis_endpoint, self.stream, self.lease_table)
        self.replicas = ReplicaSet(self.env, log_dir)
        self._dead_letters: list[dict[str, Any]] = []  # queues are drained as read: kept here
        self._alerts: list[dict[str, Any]] = []

    def feed(self, devices: int = 40, rate: float = 40.0, per_message: int = 1) -> Feed:
        return Feed(self.kinesis, self.stream, devices, rate, per_message)

    def close(self) -> None:
        self.replicas.stop(timeout_s=60)
        self.kinesis.delete_stream(StreamName=self.stream, EnforceConsumerDeletion=True)

    def read_back(self) -> ReadBack:
        s = self.aws.settings
        lines: list[dict[str, Any]] = []
        pages = self.aws.s3.get_paginator("list_objects_v2").paginate(
            Bucket=s.archive_bucket, Prefix=s.archive_prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                body = self.aws.s3.get_object(Bucket=s.archive_bucket, Key=obj["Key"])["Body"].read()
                lines.extend(json.loads(line) for line in gzip.decompress(body).splitlines())
        archived = Counter((line["deviceId"], int(line["seq"])) for line in lines)
        return ReadBack(archived, _order_breaks(lines), self.dead_letters)

    def archive_keys(self) -> list[str]:
        s = self.aws.settings
        pages = self.aws.s3.get_paginator("list_objects_v2").paginate(
            Bucket=s.archive_bucket, Prefix=s.archive_prefix
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def first_sequence(self, shard_id: str) -> str:
        """The sequence number of the shard's oldest record."""
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        (record,) = self.kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
        return str(record["SequenceNumber"])

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        self._dead_letters += [m["body"] for m in self.aws.drain(self.aws.settings.dead_letter_queue_url)]
        return self._dead_letters

    def alerts(self) -> list[dict[str, Any]]:
        """Alert messages so far (SNS → the test stack's subscribed queue), kept across calls."""
        self._alerts += [m["body"] for m in self.aws.drain(self.aws.alert_queue_url)]
        return self._alerts

    def device_on(self, shard_ids: set[str], prefix: str = "patient") -> str:
        """A device id whose partition key hashes into one of ``shard_ids``."""
        ranges = [
            (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in self.kinesis.list_shards(StreamName=self.stream)["Shards"]
            if s["ShardId"] in shard_ids
        ]
        for n in range(10_000):
            device = f"{prefix}-{n}"
            key = int(hashlib.md5(device.encode()).hexdigest(), 16)  # Kinesis maps partition keys by MD5
            if any(low <= key <= high for low, high in ranges):
                return device
        raise AssertionError(f"no device id hashes into {shard_ids}")

    def leases(self) -> list[dict[str, Any]]:
        return self.aws.scan(self.lease_table)

    def held(self) -> dict[str, int]:
        """Leases held per running replica, from each one's /metrics."""
        return {r.worker_id: int(r.value("vitalstream_leases_held")) for r in self.replicas.running}


def _order_breaks(lines: list[dict[str, Any]]) -> list[str]:
    """Devices whose samples were processed in another order than their own ``seq`` order."""
    by_device: dict[str, list[tuple[int, str]]] = {}
    for line in lines:
        by_device.setdefault(line["deviceId"], []).append((int(line["seq"]), line["processedAt"]))
    breaks = []
    for device, entries in by_device.items():
        stamps = [stamp for _, stamp in sorted(entries)]
        if stamps != sorted(stamps):
            breaks.append(device)
    return breaks


def peak_rss_bytes(pid: int) -> int:
    """A live process's peak resident set size (``VmHWM`` in ``/proc/<pid>/status``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.5) -> float:
    """Poll until ``condition()``; return the seconds it took. Fails the test on timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


def wait_drained(rig: ConsumerRig, feed: Feed, timeout_s: float = 120.0) -> ReadBack:
    """Read the sinks back until nothing sent is missing from the archive, or fail on timeout."""
    backs: list[ReadBack] = []

    def complete() -> bool:
        backs.append(rig.read_back())
        return not backs[-1].lost(feed.sent)

    try:
        wait_for(complete, timeout_s, "every sample sent to reach the archive", poll_s=2.0)
    except AssertionError as error:
        missing = len(backs[-1].lost(feed.sent)) if backs else len(feed.sent)
        raise AssertionError(f"{error}: {missing} of {len(feed.sent)} still missing") from None
    return backs[-1]
