"""The embedded emulator, on either engine: bound to 127.0.0.1, no lost Kinesis writes under
concurrency, and ``vitalstream local up`` prints its environment and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from service.tools.emulator import EmbeddedAws, Engine

pytestmark = pytest.mark.integration
ENGINES = pytest.mark.parametrize("engine", list(Engine), ids=str)


@ENGINES
def test_concurrent_put_records_to_one_shard_lose_nothing(engine: Engine) -> None:
    """moto alone can give two concurrent writes the same sequence number (the launcher's lock
    prevents it); MiniStack serves every request on one event loop."""
    with EmbeddedAws(engine=engine) as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        kinesis = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("kinesis", endpoint_url=endpoint)
        kinesis.create_stream(StreamName="race", ShardCount=1)

        def put(writer: int) -> None:
            for batch in range(10):
                records = [
                    {"Data": f"{writer}-{batch}-{i}".encode(), "PartitionKey": f"device-{writer}"}
                    for i in range(50)
                ]
                response = kinesis.put_records(StreamName="race", Records=records)
                assert response["FailedRecordCount"] == 0

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(put, range(4)))

        shard = kinesis.list_shards(StreamName="race")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(
            StreamName="race", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        seen: list[str] = []
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            seen += [record["Data"].decode() for record in page["Records"]]
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    expected = {f"{w}-{b}-{i}" for w in range(4) for b in range(10) for i in range(50)}
    assert len(seen) == len(expected)
    assert set(seen) == expected


@ENGINES
def test_local_up_prints_environment_and_stops_on_ctrl_c(engine: Engine) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = ["local", "up", "--port", "0", "--stack-name", "localup", "--emulator", str(engine)]
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("ready") for line in output):
            assert time.monotonic() < deadline, "local up did not become ready:\n" + "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "local up exited early:\n" + "".join(output)
        text = "".join(output)
        assert "endpoint http://127.0.0.1:" in text
        assert f"({engine})" in text
        assert "export VITALSTREAM_STREAM_NAME=vitalstream-telemetry" in text
        assert "export VITALSTREAM_ENDPOINT_URL=http://127.0.0.1:" in text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    time.sleep(0.2)  # let the reader thread drain the pipe
    while not lines.empty():
        output.append(lines.get())
    assert output[-1].strip() == "stopped"
