"""``vitalstream serverless`` as users run it: a process against the environment's stream and tables,
the template's mapping settings (tumbling windows on), stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from service.tools.serverless import mapping_config
from tests.integration.conftest import AwsStack
from tests.integration.test_esm_runner import Stream, archived, telemetry

pytestmark = [pytest.mark.integration]


def test_the_mapping_takes_the_templates_settings_and_overrides() -> None:
    config = mapping_config([])
    assert (config.batch_size, config.tumbling_window_s, config.max_retry_attempts) == (500, 120, 10)
    assert config.bisect_on_error is True
    assert mapping_config(["TumblingWindowInSeconds=0"]).tumbling_window_s == 0
    with pytest.raises(ValueError, match="not a mapping parameter"):
        mapping_config(["ShardCount=2"])


def test_serverless_processes_the_stream_and_writes_every_state_on_sigterm(
    aws: AwsStack, aws_endpoint: str
) -> None:
    stream = Stream(aws, aws_endpoint, shards=1)
    put = stream.put([pair for d in ("watch-a", "watch-b") for pair in telemetry(d, 10)])
    s = aws.settings
    env = os.environ | {
        "VITALSTREAM_REGION": s.region,
        "VITALSTREAM_ENDPOINT_URL": aws_endpoint,
        "VITALSTREAM_STREAM_NAME": stream.name,
        "VITALSTREAM_ARCHIVE_BUCKET": s.archive_bucket,
        "VITALSTREAM_DEVICE_STATE_TABLE": s.device_state_table,
        "VITALSTREAM_ALERT_HISTORY_TABLE": s.alert_history_table,
        "VITALSTREAM_ALERT_TOPIC_ARN": s.alert_topic_arn,
        "VITALSTREAM_DEAD_LETTER_QUEUE_URL": s.dead_letter_queue_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "serverless",
            "--report-every",
            "1s",
            "--parameter",
            "BatchSize=10",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(archived(aws)) < 20:
            assert time.monotonic() < deadline, "serverless did not archive the records in 60 s"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == "stopped"
    assert last["records"] == 20
    assert last["final_invocations"] >= 1
    items = {i["deviceId"]["S"]: i for i in aws.scan(s.device_state_table)}
    assert {d: items[d]["lastSeq"]["S"] for d in items} == {d: put[d][-1].zfill(40) for d in put}
