"""One hostile device mid-stream among normal ones, through a consumer replica run as a process (issue 21).

The hostile device sends every class the core must survive at the cost of one reject each, or none:
its counter jumps (to 2**40, then to 2**63-1) and wraps to 0; calendar-edge timestamps with offsets
fall outside 1970..9999 in UTC; samples dated a day and a year ahead of their Kinesis arrival; one
dated 30 days behind it. Then its normal samples resume and a resting-tachycardia episode follows on
the same device. Around it run a background feed of numbered samples and a handful of devices with
episodes of their own.

Read back: every shard's checkpoint reaches its last record (a poison record, so a file of nothing
but rejects is committed too); the replica's peak RSS stays under the chart's memory limit; SIGTERM
ends it with 0 within the chart's grace period; each episode raises its one alert, the hostile
device's included; each hostile sample sits in the dead-letter store with its reason, and every
other sample in the archive, once.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.core.telemetry import parse_rfc3339_ms
from tests.integration.conftest import AwsStack
from tests.integration.consumer_rig import POISON, ConsumerRig, peak_rss_bytes, wait_drained, wait_for

pytestmark = pytest.mark.integration

CHART_VALUES = Path(__file__).resolve().parents[2] / "helm" / "vitalstream" / "values.yaml"
STEP_MS = 5_000  # one sample every 5 s of event time; they are put on the stream much faster
DAY_MS = 86_400_000
PRELUDE = 8  # normal samples before the episodes; the hostile device's last three are counter jumps
EPISODE = 36  # 3 minutes of event time
STEPS_PER_PUT = 4  # the stream gets the steps a few at a time: they span many batches
HOSTILE_SEQ0 = 100  # the hostile device's counter before it jumps
JUMPS = (2**40, 2**63 - 1, 0)  # a jump, a jump to the largest counter, then the wrap to 0
EPISODES: dict[str, dict[str, int]] = {  # an episode's samples, by the alert they raise
    "TACHYCARDIA": {"heartRate": 130, "steps": 0},
    "BRADYCARDIA": {"heartRate": 35},
    "LOW_SPO2": {"spo2": 85},
}
NORMAL_EPISODES = ("TACHYCARDIA", "BRADYCARDIA", "LOW_SPO2", "TACHYCARDIA", "BRADYCARDIA")
OUT_OF_RANGE = (  # outside 1970..9999 once in UTC, whatever they look like before their offset
    "9999-12-31T23:30:00.000-05:00",  # 10000-01-01T04:30Z
    "0001-01-01T00:30:00.000+01:00",  # 0000-12-31T23:30Z
    "1969-12-31T23:59:59.999Z",
)


def stamp(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def payload(device: str, timestamp: str, seq: int, **values: int) -> bytes:
    body = {"deviceId": device, "timestamp": timestamp, "heartRate": 70, "steps": 0, "spo2": 97, "seq": seq}
    return json.dumps(body | values).encode()


@dataclass
class Plan:
    """What goes on the stream, put by put, and what each sample must become."""

    hostile_episode_ms: int  # event time of the hostile device's first episode sample
    hostile_last_ms: int  # and of its last
    puts: list[list[tuple[str, bytes]]] = field(default_factory=list)  # (partition key, data)
    archived: set[tuple[str, int]] = field(default_factory=set)  # (device, seq)
    rejected: dict[str, str] = field(default_factory=dict)  # the hostile device's: timestamp → reason
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (device, type): one per episode


def plan(hostile: str, normal: dict[str, str], wall_ms: int) -> Plan:
    """Steps 5 s apart from 5 minutes before ``wall_ms``: the last is ~1.5 minutes before it, so no
    sample but the hostile ones is ahead of its arrival by the skew or behind it by the horizon."""
    start = wall_ms - 5 * 60_000
    out = Plan(start + PRELUDE * STEP_MS, start + (PRELUDE + EPISODE - 1) * STEP_MS)
    # Each reject carries a counter the device's episode uses again (1..6) and a clock far from the
    # episode's: were a rejected sample to move the device's state, the episode's samples would be
    # taken for duplicates or late ones, and its alert would never come.
    hostile_rejects = [(ts, "timestamp_out_of_range") for ts in OUT_OF_RANGE] + [
        (stamp(wall_ms + DAY_MS), "timestamp_in_future"),
        (stamp(wall_ms + 365 * DAY_MS), "timestamp_in_future"),
        (stamp(wall_ms - 30 * DAY_MS), "timestamp_too_old"),
    ]
    out.rejected = dict(hostile_rejects)
    row: list[tuple[str, bytes]] = []
    for step in range(PRELUDE + EPISODE):
        at = stamp(start + step * STEP_MS)
        for device, kind in normal.items():
            values = EPISODES[kind] if step >= PRELUDE else {}
            row.append((device, payload(device, at, step + 1, **values)))
            out.archived.add((device, step + 1))
        if step < PRELUDE - len(JUMPS):
            seq, values = HOSTILE_SEQ0 + step, {}
        elif step < PRELUDE:
            seq, values = JUMPS[step - PRELUDE + len(JUMPS)], {}
        else:
            seq, values = step - PRELUDE + 1, EPISODES["TACHYCARDIA"]
        row.append((hostile, payload(hostile, at, seq, **values)))
        out.archived.add((hostile, seq))
        if step == PRELUDE - 1:  # right after the wrap, before the episode
            row += [(hostile, payload(hostile, ts, n)) for n, (ts, _) in enumerate(hostile_rejects, 1)]
        if (step + 1) % STEPS_PER_PUT == 0 or step == PRELUDE + EPISODE - 1:
            out.puts.append(row)
            row = []
    out.alerts = [(device, kind) for device, kind in normal.items()] + [(hostile, "TACHYCARDIA")]
    return out


def put(rig: ConsumerRig, entries: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """One PutRecords in the given order; none may fail (a retry would reorder a device's samples)."""
    records = [{"Data": data, "PartitionKey": key} for key, data in entries]
    response = rig.kinesis.put_records(StreamName=rig.stream, Records=records)
    assert response.get("FailedRecordCount", 0) == 0, response
    return list(response["Records"])


def chart_limits() -> tuple[int, float]:
    """The chart's memory limit (bytes) and terminationGracePeriodSeconds, from its values."""
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    memory = str(values["resources"]["limits"]["memory"])
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(memory[:-2]) * units[memory[-2:]], float(values["terminationGracePeriodSeconds"])


def checkpoints(rig: ConsumerRig) -> dict[str, str]:
    return {item["leaseKey"]["S"]: item["checkpoint"]["S"] for item in rig.leases()}


def report(name: str, **figures: object) -> None:
    """Figures for the issue note: printed, and shown by pytest with -s or -rA."""
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def test_a_hostile_device_costs_one_reject_per_sample_and_its_next_episode_still_raises(
    aws: AwsStack, kinesis_endpoint: str, tmp_path: Path
) -> None:
    memory_limit, grace_s = chart_limits()
    rig = ConsumerRig(aws, kinesis_endpoint, 2, tmp_path / "rig")
    try:
        (replica,) = rig.replicas.start(1)
        rig.replicas.wait_ready()
        wait_for(lambda: rig.held() == {replica.worker_id: 2}, 60, "the replica holding both leases")
        shards = sorted(checkpoints(rig))
        hostile = rig.device_on({shards[0]}, prefix="hostile")
        normal = {
            rig.device_on({shards[i % 2]}, prefix=f"episode{i}"): kind
            for i, kind in enumerate(NORMAL_EPISODES)
        }
        feed = rig.feed(devices=20, rate=10)
        feed.start()

        def processed() -> float:
            return replica.value("vitalstream_records_total", outcome="processed")

        wait_for(lambda: processed() > 0, 60, "the background feed being processed")

        plan_ = plan(hostile, normal, int(time.time() * 1000))
        for entries in plan_.puts:
            put(rig, entries)
            time.sleep(0.3)
        seen = processed()
        wait_for(lambda: processed() > seen, 60, "the feed going on after the hostile device")
        feed.stop()
        # each shard ends with a poison record: its checkpoint must pass a file of rejects alone
        tails = put(rig, [(rig.device_on({shard}, prefix="tail"), POISON) for shard in shards])
        last = {r["ShardId"]: r["SequenceNumber"] for r in tails}
        assert set(last) == set(shards)
        feed.sent |= plan_.archived

        back = wait_drained(rig, feed, timeout_s=180)
        wait_for(lambda: checkpoints(rig) == last, 90, "each shard's checkpoint at its last record")
        expected_letters = len(plan_.rejected) + len(shards)
        wait_for(lambda: len(rig.dead_letters) >= expected_letters, 60, f"{expected_letters} dead letters")
        wanted = set(plan_.alerts)
        wait_for(lambda: {(a["deviceId"], a["type"]) for a in rig.alerts()} >= wanted, 60, "every alert")
        reasons = {
            reason: replica.value("vitalstream_dead_letters_total", reason=reason)
            for reason in (*sorted(set(plan_.rejected.values())), "invalid_json", "processing_error")
        }
        errors = [e for e in replica.logs() if e.get("level") in ("ERROR", "CRITICAL")]

        peak = peak_rss_bytes(replica.process.pid)  # just before SIGTERM
        asked = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        try:
            code = replica.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the replica was still running {grace_s:.0f} s (the grace period) after SIGTERM")
        stopped_s = time.monotonic() - asked
        report(
            "hostile device",
            sent=len(feed.sent),
            archived=len(back.archived),
            dead_letters=len(rig.dead_letters),
            alerts=len(rig.alerts()),
            peak_rss_mib=round(peak / 2**20, 1),
            sigterm_to_exit_s=round(stopped_s, 1),
        )

        assert code == 0
        assert peak < memory_limit, f"peak RSS {peak / 2**20:.0f} MiB over the chart's limit"
        assert errors == []
        assert checkpoints(rig) == last  # SIGTERM moved nothing back
        assert not [item for item in rig.leases() if "leaseOwner" in item]  # released on SIGTERM

        # the archive: every accepted sample once; the hostile device's jumps and wrap among them
        assert back.duplicated == 0
        assert [d for d in back.order_breaks if d != hostile] == []  # its counter wraps, on purpose
        assert {seq for device, seq in back.archived if device == hostile} == {
            seq for device, seq in plan_.archived if device == hostile
        }
        # the dead letters: each hostile sample with its reason, the two poison tails, nothing else
        letters = rig.dead_letters
        by_hostile = [d for d in letters if d.get("deviceId") == hostile]
        stored = {json.loads(base64.b64decode(d["data"]))["timestamp"]: d["reason"] for d in by_hostile}
        assert stored == plan_.rejected
        assert {(d["shardId"], d["field"]) for d in by_hostile} == {(shards[0], "timestamp")}
        others = sorted((d["shardId"], d["reason"]) for d in letters if d.get("deviceId") != hostile)
        assert others == [(shard, "invalid_json") for shard in shards]
        assert reasons == {
            "timestamp_out_of_range": 3,
            "timestamp_in_future": 2,
            "timestamp_too_old": 1,
            "invalid_json": 2,
            "processing_error": 0,
        }
        # the alerts: one per episode, the hostile device's from its episode's first sample on
        alerts = rig.alerts()
        assert sorted((a["deviceId"], a["type"]) for a in alerts) == sorted(plan_.alerts)
        (tachycardia,) = [a for a in alerts if a["deviceId"] == hostile]
        assert parse_rfc3339_ms(tachycardia["startedAt"]) == plan_.hostile_episode_ms
        # the latest-state view (written in full on SIGTERM): the episode's last sample, still open
        view = aws.dynamodb.get_item(
            TableName=aws.settings.device_state_table, Key={"deviceId": {"S": hostile}}, ConsistentRead=True
        )["Item"]
        assert parse_rfc3339_ms(view["timestamp"]["S"]) == plan_.hostile_last_ms
        assert (view["status"]["S"], view["anomalies"]["L"]) == ("TACHYCARDIA", [{"S": "TACHYCARDIA"}])
    finally:
        rig.close()
