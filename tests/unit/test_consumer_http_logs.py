"""HealthServer (/metrics, /healthz, /readyz on 127.0.0.1, port 0) and the JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from service.runtime.accounting import Items, Kind, RequestCounter, Source
from service.runtime.consumer.http import HealthServer
from service.runtime.consumer.metrics import ConsumerMetrics
from service.runtime.logs import JsonFormatter, bind


def arun(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 5))


async def request(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()  # the server closes the connection after one response
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


class Flags:
    def __init__(self) -> None:
        self.live = True
        self.ready = False


async def serving(flags: Flags, metrics: ConsumerMetrics) -> tuple[HealthServer, int]:
    server = HealthServer(metrics.registry, lambda: flags.live, lambda: flags.ready)
    port = await server.start("127.0.0.1", 0)
    assert port > 0
    return server, port


def test_metrics_endpoint_serves_the_consumer_registry() -> None:
    async def body() -> None:
        requests = RequestCounter()
        metrics = ConsumerMetrics(requests=requests)
        metrics.records.labels("processed").inc(3)
        requests.count("dynamodb", "UpdateItem", Items(writes={"device-state": 1}))
        requests.count("dynamodb", "BatchWriteItem", Items(writes={"device-state": 7}))
        requests.count(
            "dynamodb", "Scan", Items(reads={"leases": 1}), {("leases", Kind.READ, Source.REPORTED): 0.5}
        )
        requests.count(
            "dynamodb",
            "BatchGetItem",
            Items(reads={"device-state": 2}),
            {("device-state", Kind.READ, Source.ESTIMATED): 2.0},
        )
        requests.count("kinesis", "GetRecords", Items())
        server, port = await serving(Flags(), metrics)
        try:
            status, headers, text = await request(port, "/metrics")
        finally:
            await server.stop()
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        assert int(headers["Content-Length"]) == len(text)
        assert b'vitalstream_records_total{outcome="processed"} 3.0' in text
        assert b'vitalstream_throttles_total{api="GetRecords"} 0.0' in text
        assert b'vitalstream_aws_requests_total{operation="UpdateItem",service="dynamodb"} 1.0' in text
        assert b'vitalstream_aws_requests_total{operation="GetRecords",service="kinesis"} 1.0' in text
        assert b'vitalstream_dynamodb_item_writes_total{table="device-state"} 8.0' in text
        assert b"# TYPE vitalstream_dynamodb_item_reads_total counter" in text
        capacity = b"vitalstream_dynamodb_capacity_units_total"
        assert capacity + b'{kind="read",source="reported",table="leases"} 0.5' in text
        assert capacity + b'{kind="read",source="estimated",table="device-state"} 2.0' in text

    arun(body())


def test_healthz_and_readyz_follow_their_callables() -> None:
    async def body() -> None:
        flags = Flags()
        server, port = await serving(flags, ConsumerMetrics())
        try:
            assert (await request(port, "/healthz"))[0] == 200
            assert (await request(port, "/readyz"))[0] == 503
            flags.ready = True
            assert (await request(port, "/readyz"))[0] == 200
            assert (await request(port, "/readyz?verbose=1"))[0] == 200
            flags.live, flags.ready = False, False  # wedged lease loop; shutting down
            status, _, text = await request(port, "/healthz")
            assert (status, text) == (503, b"stalled\n")
            assert (await request(port, "/readyz"))[0] == 503
        finally:
            await server.stop()

    arun(body())


def test_unknown_paths_and_methods() -> None:
    async def body() -> None:
        server, port = await serving(Flags(), ConsumerMetrics())
        try:
            assert (await request(port, "/"))[0] == 404
            assert (await request(port, "/metrics/extra"))[0] == 404
            assert (await request(port, "/metrics", method="POST"))[0] == 405
            status, headers, text = await request(port, "/healthz", method="HEAD")
            assert (status, text) == (200, b"")
            assert headers["Content-Length"] == "3"
        finally:
            await server.stop()

    arun(body())


# --- logs ----------------------------------------------------------------------------------------------


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("vitalstream", worker="worker-7"))
    logger = logging.getLogger("tests.consumer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # one JSON object per line


def test_each_record_is_one_json_line_with_the_bound_shard(lines: io.StringIO) -> None:
    log = logging.getLogger("tests.consumer")

    async def shard_task(shard_id: str) -> None:
        bind(shard_id=shard_id)
        bind(first_sequence="42")
        log.info("process_records\nsecond line", extra={"checkpoint": "41"})
        await asyncio.to_thread(log.warning, "from the sink thread")

    async def body() -> None:
        await asyncio.gather(shard_task("shardId-000000000001"), shard_task("shardId-000000000002"))
        log.info("outside any shard")

    asyncio.run(body())

    got = entries(lines)
    assert len(got) == 5
    by_shard = [e.get("shard_id") for e in got]
    assert sorted(by_shard[:4]) == sorted(["shardId-000000000001", "shardId-000000000002"] * 2)
    assert "shard_id" not in got[4]  # binding is per task: nothing leaks outside
    first = got[0]
    assert first["message"] == "process_records\nsecond line"
    assert (first["level"], first["logger"], first["worker"], first["service"]) == (
        "INFO",
        "tests.consumer",
        "worker-7",
        "vitalstream",
    )
    assert (first["checkpoint"], first["first_sequence"]) == ("41", "42")
    assert first["timestamp"].endswith("Z")
    assert list(first)[:4] == ["level", "message", "timestamp", "service"]  # Powertools Logger's keys
    threaded = [e for e in got if e["message"] == "from the sink thread"]
    assert {e["shard_id"] for e in threaded} == {"shardId-000000000001", "shardId-000000000002"}


def test_exceptions_are_kept_inside_the_json_line(lines: io.StringIO) -> None:
    log = logging.getLogger("tests.consumer")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("process_records failed", extra={"shard_id": "shardId-000000000003"})

    (entry,) = entries(lines)
    assert entry["level"] == "ERROR"
    assert entry["shard_id"] == "shardId-000000000003"
    assert "ValueError: boom" in entry["exc"]
