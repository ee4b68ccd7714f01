"""Lambda mode's archive role on a real stream and bucket (the emulator), driven by the local event
source mapping: a crash after the file's upload and before the checkpoint, a bisected retry and a
replay from the start leave exactly one copy of every sample in the archive."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from lambda_shim import archive_handler
from service.runtime.composition import build_archive_role
from tests.events import LIVE_T0_MS, sample
from tests.integration.conftest import AwsStack
from tests.integration.test_esm_runner import Stream, archived, mapping_for, run_until, telemetry

pytestmark = [pytest.mark.integration, pytest.mark.kinesis]

Handler = Callable[[dict[str, Any], Any], Any]


@pytest.fixture
def stream(aws: AwsStack, kinesis_endpoint: str) -> Stream:
    return Stream(aws, kinesis_endpoint)


@pytest.fixture
def failure_queue(aws: AwsStack) -> str:
    return str(aws.sqs.create_queue(QueueName=f"archive-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"])


@pytest.fixture
def role(aws: AwsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        archive_handler, "_role", functools.cache(lambda: build_archive_role(aws.settings, aws.session))
    )


class Acks:
    """The archive handler, noting every record an invocation acknowledged; ``crash_after`` uploads
    then fails that many invocations, as a sandbox that dies before Lambda sees the response."""

    def __init__(self, crash_after: int = 0) -> None:
        self.done: set[str] = set()
        self.crashes, self._left = 0, crash_after
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        response = archive_handler.handler(event, context)
        with self._lock:
            if self._left and event["Records"]:
                self._left -= 1
                self.crashes += 1
                raise RuntimeError("sandbox died after the upload")
            if not response["batchItemFailures"]:
                self.done.update(r["kinesis"]["sequenceNumber"] for r in event["Records"])
        return response


def fleet() -> list[tuple[str, bytes]]:
    """Three devices of single samples and one that batches five samples a message."""
    singles = [item for device in ("watch-a", "watch-b", "watch-c") for item in telemetry(device, 20)]
    samples = [sample("watch-d", 5 * i, 70, seq=i, base_ms=LIVE_T0_MS) for i in range(20)]
    batches = [
        (
            "watch-d",
            json.dumps(
                {
                    "deviceId": "watch-d",
                    "samples": [{k: v for k, v in s.items() if k != "deviceId"} for s in samples[i : i + 5]],
                }
            ).encode(),
        )
        for i in range(0, 20, 5)
    ]
    return singles + batches


def positions(aws: AwsStack) -> Counter[tuple[str, int | None]]:
    return Counter((line["sequenceNumber"], line.get("subSequenceNumber")) for line in archived(aws))


def archive_once(aws: AwsStack, stream: Stream, failures: str, acks: Acks, **config: Any) -> set[str]:
    put = {seq for seqs in stream.put(fleet()).values() for seq in seqs}
    mapping = mapping_for(stream, acks, failures, aws, tumbling_window_s=900, **config)
    run_until(mapping, lambda: put <= acks.done)
    return put


@pytest.mark.usefixtures("role")
@pytest.mark.parametrize("bisect", [False, True], ids=["retried", "bisected"])
def test_a_crash_after_the_upload_leaves_one_copy_of_every_sample(
    aws: AwsStack, stream: Stream, failure_queue: str, bisect: bool
) -> None:
    acks = Acks(crash_after=2)
    archive_once(aws, stream, failure_queue, acks, batch_size=40, bisect_on_error=bisect)
    copies = positions(aws)
    assert acks.crashes == 2
    assert sum(copies.values()) == 80  # 60 single samples and 4 messages of 5
    assert set(copies.values()) == {1}
    assert not aws.drain(failure_queue)


@pytest.mark.usefixtures("role")
def test_a_mapping_recreated_at_the_start_with_other_batches_archives_nothing_again(
    aws: AwsStack, stream: Stream, failure_queue: str
) -> None:
    put = archive_once(aws, stream, failure_queue, Acks(), batch_size=7)
    objects = aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix)
    again = Acks()
    run_until(
        mapping_for(stream, again, failure_queue, aws, tumbling_window_s=900, batch_size=30),
        lambda: put <= again.done,
    )
    assert aws.objects(aws.settings.archive_bucket, aws.settings.archive_prefix) == objects
    assert set(positions(aws).values()) == {1}
    assert sum(positions(aws).values()) == 80
