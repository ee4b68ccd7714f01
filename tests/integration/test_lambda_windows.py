"""Lambda mode with tumbling windows, end to end on a real endpoint: the local event source mapping
(``service.tools.esm``, windows on) feeding the real shim, against moto server on 127.0.0.1, with the
counting proxy in front of it for what the shim asks of DynamoDB."""

from __future__ import annotations

import base64
import functools
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lambda_shim import handler as shim
from lambda_shim.bootstrap import build_pipeline
from service.cli import main
from service.core.window_handoff import Handoff, decode_handoff
from service.core.window_state import WindowState, decode_window_state
from service.runtime.accounting import RequestCounter
from service.runtime.window import STATE_KEY
from service.tools.esm import EventSourceMapping
from tests.emf import check_emf, emf_lines
from tests.events import LIVE_T0_MS, sample
from tests.integration.conftest import AwsStack, skip_unfaithful_resharding
from tests.integration.fault_proxy import FaultProxy
from tests.integration.test_esm_runner import Stream, archived, mapping_for, telemetry

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]

WINDOW_S = 3  # short, so windows end (idle) within a test; the template's default is longer
DEVICES = tuple(f"watch-{i:02d}" for i in range(20))


@pytest.fixture
def proxy(aws: AwsStack) -> Iterator[FaultProxy]:
    started = FaultProxy(str(aws.settings.endpoint_url)).start()
    yield started
    started.stop()


@pytest.fixture
def requests(aws: AwsStack, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> RequestCounter:
    """The shim's runtime on the test's session, through the proxy, counted by its own metrics too."""
    counter = RequestCounter()
    settings = aws.settings.model_copy(update={"endpoint_url": proxy.url})
    monkeypatch.setattr(
        shim, "_runtime", functools.cache(lambda: build_pipeline(settings, aws.session, requests=counter))
    )
    return counter


@pytest.fixture
def stream(aws: AwsStack, kinesis_endpoint: str) -> Stream:
    return Stream(aws, kinesis_endpoint, shards=1)


@pytest.fixture
def failure_queue(aws: AwsStack) -> str:
    return aws.sqs.create_queue(QueueName=f"esm-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def windowed(stream: Stream, handler: Any, failures: str, aws: AwsStack, **config: Any) -> EventSourceMapping:
    return mapping_for(
        stream, handler, failures, aws, **({"batch_size": 100, "tumbling_window_s": WINDOW_S} | config)
    )


def settle(mapping: EventSourceMapping, records: int, timeout_s: float = 90.0) -> None:
    """Run ``mapping`` until it has delivered ``records`` and ended every window it opened."""
    deadline = time.monotonic() + timeout_s
    with mapping:
        while True:
            stats = mapping.stats
            pollers = list(mapping._pollers.values())
            idle = pollers and all(p._open is None and not p._queue for p in pollers)
            if stats.records_delivered >= records and idle:
                return
            assert time.monotonic() < deadline, f"mapping did not settle in {timeout_s} s: {stats}"
            time.sleep(0.2)


def device_items(aws: AwsStack) -> dict[str, dict[str, Any]]:
    return {i["deviceId"]["S"]: i for i in aws.scan(aws.settings.device_state_table)}


def window_of(state: dict[str, Any]) -> WindowState:
    return decode_window_state(base64.b64decode(state[STATE_KEY]))


def noting(seen: list[dict[str, Any]], inner: Callable[[dict[str, Any], Any], Any]) -> Any:
    def handler(event: dict[str, Any], context: Any) -> Any:
        response = inner(event, context)
        seen.append({"event": event, "response": response})
        return response

    return handler


def test_windows_write_each_device_once_per_window_counted_outside_and_by_the_metrics(
    aws: AwsStack,
    stream: Stream,
    failure_queue: str,
    proxy: FaultProxy,
    requests: RequestCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines, seen = io.StringIO(), []
    monkeypatch.setattr(shim, "OUTPUT", lines)
    put = stream.put([pair for i in range(50) for d in DEVICES for pair in telemetry(d, 50)[i : i + 1]])
    settle(windowed(stream, noting(seen, shim.handler), failure_queue, aws), 1_000)

    table = aws.settings.device_state_table
    writes, gets = proxy.item_writes[table], proxy.calls[("dynamodb", "BatchGetItem")]
    counted = requests.snapshot()
    assert len(archived(aws)) == 1_000
    assert writes <= 100, f"{writes} device-table item writes for 1,000 records"
    assert gets <= 5, f"{gets} BatchGetItem calls for 1,000 records"
    assert counted.item_writes.get(table, 0) == writes
    assert counted.calls("dynamodb", "BatchGetItem") == gets
    items = device_items(aws)
    assert all(items[d]["lastSeq"]["S"] == put[d][-1].zfill(40) for d in DEVICES)
    metrics = emf_lines(lines.getvalue())  # one valid EMF line per invocation, in window mode
    assert len(metrics) == len(seen)
    for line in metrics:
        check_emf(line)
        assert line["mode"] == "window"
    assert sum(line["Samples_processed"] for line in metrics) == 1_000
    assert sum(line["WindowDevicesWritten"] for line in metrics) == writes
    assert sum(line["WindowsClosed"] for line in metrics) >= 1
    assert max(line["WindowStateSize"] for line in metrics) > 2  # an open window's state, in bytes


def test_a_full_redelivery_with_windows_changes_no_sink(
    aws: AwsStack, stream: Stream, failure_queue: str, requests: RequestCounter
) -> None:
    stream.put([pair for d in DEVICES[:4] for pair in telemetry(d, 10, bpm=130)])
    settle(windowed(stream, shim.handler, failure_queue, aws), 40)
    objects, items = aws.objects(aws.settings.archive_bucket), device_items(aws)
    assert len(aws.drain(aws.alert_queue_url)) == 4

    settle(windowed(stream, shim.handler, failure_queue, aws), 40)  # a new mapping: from TRIM_HORIZON

    assert aws.objects(aws.settings.archive_bucket) == objects
    assert device_items(aws) == items
    assert aws.drain(aws.alert_queue_url) == []


def test_a_crash_after_the_final_invocations_writes_is_retried_without_a_duplicate_effect(
    aws: AwsStack, stream: Stream, failure_queue: str, proxy: FaultProxy, requests: RequestCounter
) -> None:
    put = stream.put([pair for d in DEVICES[:4] for pair in telemetry(d, 10, bpm=130)])
    crashed: list[dict[str, Any]] = []

    def crashing(event: dict[str, Any], context: Any) -> Any:
        response = shim.handler(event, context)  # the device table has the window's states now
        if event.get("isFinalInvokeForWindow") and not crashed:
            crashed.append(event)
            raise RuntimeError("the container died before Lambda saw the response")
        return response

    mapping = windowed(stream, crashing, failure_queue, aws)
    settle(mapping, 40)

    assert crashed
    assert mapping.stats.final_invocations >= 2
    items = device_items(aws)
    assert all(items[d]["lastSeq"]["S"] == put[d][-1].zfill(40) for d in DEVICES[:4])
    lines = archived(aws)
    assert len(lines) == 40
    assert Counter((line["deviceId"], line["sequenceNumber"]) for line in lines).most_common(1)[0][1] == 1
    alerts = [m["body"]["alertId"] for m in aws.drain(aws.alert_queue_url)]
    assert len(alerts) == len(set(alerts)) == 4


def handed_on(aws: AwsStack) -> dict[str, Handoff]:
    """Every shard's window handoff, by shard."""
    prefix = aws.settings.window_handoff_prefix
    found = aws.objects(aws.settings.archive_bucket, prefix)
    return {decode_handoff(blob).shard_id: decode_handoff(blob) for blob in found.values()}


def newest(aws: AwsStack) -> dict[str, str]:
    """Each device's newest stored position: its item's, or a handoff's when that is ahead (a handoff
    holds what the shard's next window writes)."""
    at = {d: item["lastSeq"]["S"] for d, item in device_items(aws).items()}
    for handoff in handed_on(aws).values():
        for device, state in handoff.window.states.items():
            at[device] = max(at.get(device, ""), state.last_sequence.zfill(40))
    return at


def test_a_window_hands_many_devices_on_and_the_next_window_writes_them(
    aws: AwsStack,
    stream: Stream,
    failure_queue: str,
    proxy: FaultProxy,
    requests: RequestCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shim, "_window_writes", lambda: 10)  # 20 devices: more than a close writes
    first = stream.put([pair for i in range(5) for d in DEVICES for pair in telemetry(d, 5)[i : i + 1]])
    settle(windowed(stream, shim.handler, failure_queue, aws), 100)
    table = aws.settings.device_state_table
    assert proxy.item_writes[table] == 0  # the close stored one object instead of 20 items
    (handoff,) = handed_on(aws).values()
    assert {d: s.last_sequence for d, s in handoff.window.states.items()} == {
        d: first[d][-1] for d in DEVICES
    }

    later = [(d, telemetry(d, 6)[5][1]) for d in DEVICES]  # one more sample each, in a later window
    second = stream.put(later)
    settle(windowed(stream, shim.handler, failure_queue, aws, batch_size=2), 120)
    items = device_items(aws)
    assert sorted(items) == sorted(DEVICES)  # the next window wrote every device it took over
    assert all(items[d]["lastSeq"]["S"] >= first[d][-1].zfill(40) for d in DEVICES)
    assert newest(aws) == {d: second[d][-1].zfill(40) for d in DEVICES}  # nothing lost on the way
    assert proxy.item_writes[table] <= 2 * len(DEVICES)
    assert len(archived(aws)) == 120


def test_flush_handoffs_writes_what_the_last_windows_handed_on(
    aws: AwsStack,
    stream: Stream,
    failure_queue: str,
    requests: RequestCounter,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(shim, "_window_writes", lambda: 10)
    put = stream.put([pair for i in range(5) for d in DEVICES for pair in telemetry(d, 5)[i : i + 1]])
    settle(windowed(stream, shim.handler, failure_queue, aws), 100)
    assert device_items(aws) == {}  # the mapping is off now: nothing will adopt the handoff
    values = aws.settings.model_dump(exclude={"detection"})
    for name, value in values.items():
        if value is not None:
            monkeypatch.setenv(f"VITALSTREAM_{name.upper()}", str(value))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # an operator's credentials, for the emulator
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert main(["flush-handoffs"]) == 0
    items = device_items(aws)
    assert {d: items[d]["lastSeq"]["S"] for d in DEVICES} == {d: put[d][-1].zfill(40) for d in DEVICES}
    assert f"{len(DEVICES)} devices from 1 handoffs" in capsys.readouterr().out
    assert main(["flush-handoffs"]) == 0  # again: forward-only, nothing moves back
    assert device_items(aws) == items

    monkeypatch.setenv("VITALSTREAM_ARCHIVE_BUCKET", "no-such-bucket-vitalstream")
    assert main(["flush-handoffs"]) == 1
    assert "error: snapshots no-such-bucket-vitalstream: NoSuchBucket" in capsys.readouterr().err


@pytest.mark.parametrize("close_writes", [100, 2], ids=["written-at-close", "handed-on"])
def test_after_a_split_children_start_with_fresh_state_and_take_their_devices_over(
    aws: AwsStack,
    stream: Stream,
    failure_queue: str,
    requests: RequestCounter,
    backend: str,
    close_writes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the table (the parent's close wrote its few devices) or from the parent's handoff (each
    child adopts the devices of its hash key range)."""
    skip_unfaithful_resharding(backend)
    monkeypatch.setattr(shim, "_window_writes", lambda: close_writes)
    # watch-00 is at 130 bpm for 25 s before the split and 30 s after: one tachycardia, raised in a
    # child from the episode the parent's window wrote to the table.
    before = [
        (d, json.dumps(sample(d, 5 * i, 130 if d == "watch-00" else 70, seq=i, base_ms=LIVE_T0_MS)).encode())
        for d in DEVICES[:6]
        for i in range(6)
    ]
    stream.put(before)
    parent = stream.kinesis.list_shards(StreamName=stream.name)["Shards"][0]
    low, high = int(parent["HashKeyRange"]["StartingHashKey"]), int(parent["HashKeyRange"]["EndingHashKey"])
    stream.kinesis.split_shard(
        StreamName=stream.name, ShardToSplit=parent["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    stream.kinesis.get_waiter("stream_exists").wait(StreamName=stream.name, WaiterConfig={"Delay": 0.2})
    after = stream.put(
        [
            (
                d,
                json.dumps(
                    sample(d, 30 + 5 * i, 130 if d == "watch-00" else 70, seq=6 + i, base_ms=LIVE_T0_MS)
                ).encode(),
            )
            for d in DEVICES[:6]
            for i in range(6)
        ]
    )
    seen: list[dict[str, Any]] = []
    settle(windowed(stream, noting(seen, shim.handler), failure_queue, aws), 72)

    children = {
        s["ShardId"]
        for s in stream.kinesis.list_shards(StreamName=stream.name)["Shards"]
        if s.get("ParentShardId") == parent["ShardId"]
    }
    shards = Counter(s["event"]["shardId"] for s in seen)
    first_child = next((s["event"] for s in seen if s["event"]["shardId"] in children), None)
    assert first_child is not None, (children, shards)
    assert first_child["state"] == {}
    assert newest(aws) == {d: after[d][-1].zfill(40) for d in DEVICES[:6]}
    alerts = [m["body"] for m in aws.drain(aws.alert_queue_url)]
    assert [(a["deviceId"], a["type"]) for a in alerts] == [("watch-00", "TACHYCARDIA")]
    assert len(archived(aws)) == 72


def test_a_fleet_near_the_state_limit_ends_windows_early_without_loss(
    aws: AwsStack, stream: Stream, failure_queue: str, requests: RequestCounter
) -> None:
    """The mapping's limit set below what the shim returns: Lambda's early end, then a fresh state."""
    put = stream.put([pair for i in range(5) for d in DEVICES for pair in telemetry(d, 5)[i : i + 1]])
    seen: list[dict[str, Any]] = []
    mapping = windowed(
        stream, noting(seen, shim.handler), failure_queue, aws, batch_size=20, state_limit_bytes=400
    )
    settle(mapping, 100)

    assert mapping.stats.windows_ended_early >= 1
    assert any(s["event"].get("isWindowTerminatedEarly") for s in seen)
    lines = archived(aws)
    assert sorted((line["deviceId"], line["sequenceNumber"]) for line in lines) == sorted(
        (d, s) for d in DEVICES for s in put[d]
    )
    items = device_items(aws)
    assert all(items[d]["lastSeq"]["S"] == put[d][-1].zfill(40) for d in DEVICES)


def test_the_shim_keeps_its_state_under_its_budget_by_writing_the_window_out(
    aws: AwsStack,
    stream: Stream,
    failure_queue: str,
    requests: RequestCounter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shim, "_window_budget", lambda: 500)
    put = stream.put([pair for i in range(5) for d in DEVICES for pair in telemetry(d, 5)[i : i + 1]])
    seen: list[dict[str, Any]] = []
    mapping = windowed(stream, noting(seen, shim.handler), failure_queue, aws, batch_size=20)
    settle(mapping, 100)

    sizes = [len(json.dumps(s["response"]["state"])) for s in seen]
    assert max(sizes) <= 500
    restarted = [s for s in seen if s["event"]["Records"] and not window_of(s["response"]["state"]).states]
    assert restarted, sizes  # a batch that wrote the window out and returned an empty one
    assert mapping.stats.windows_ended_early == 0
    assert len(archived(aws)) == 100
    items = device_items(aws)
    assert all(items[d]["lastSeq"]["S"] == put[d][-1].zfill(40) for d in DEVICES)
