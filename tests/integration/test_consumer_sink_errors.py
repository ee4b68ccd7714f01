"""A sink that answers AccessDenied, as a replica process meets it: not ready, said once, nothing lost.

A ``vitalstream consume`` replica reaches every sink through the fault proxy (Kinesis directly). While
the archive's prefix answers S3's 403 ``AccessDenied`` (a missing ``s3:PutObject`` permission), the
replica turns not ready, logs the cause once, counts every refused upload by code and checkpoints
nothing past the records whose file is not up; once the permission is back it goes on, and every
record's effects are there, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.records import padded_sequence
from tests.integration.conftest import AwsStack
from tests.integration.consumer_rig import ConsumerRig, wait_drained, wait_for
from tests.integration.fault_proxy import FaultProxy, s3_access_denied

pytestmark = pytest.mark.integration


@pytest.fixture
def rig(aws: AwsStack, kinesis_endpoint: str, tmp_path: Path) -> Iterator[ConsumerRig]:
    made = ConsumerRig(aws, kinesis_endpoint, 2, tmp_path / "rig")
    yield made
    made.close()


def checkpoints(rig: ConsumerRig) -> dict[str, str]:
    return {lease["leaseKey"]["S"]: lease["checkpoint"]["S"] for lease in rig.leases()}


def sink_error_lines(lines: Iterator[dict[str, Any]], message: str = "sink error") -> list[tuple[Any, ...]]:
    return [
        (line["sink"], line["code"], line["resource"], line["permanent"])
        for line in lines
        if line.get("message") == message
    ]


def test_access_denied_on_the_archive_turns_the_replica_not_ready_then_nothing_is_lost(
    rig: ConsumerRig, aws: AwsStack
) -> None:
    bucket, prefix = aws.settings.archive_bucket, aws.settings.archive_prefix
    proxy = FaultProxy(str(aws.settings.endpoint_url)).start()
    try:
        (replica,) = rig.replicas.start(1, extra_env={"VITALSTREAM_ENDPOINT_URL": proxy.url})
        rig.replicas.wait_ready()
        feed = rig.feed(devices=10)
        feed.put(40)
        wait_drained(rig, feed)

        def denied_uploads() -> float:
            return replica.value("vitalstream_sink_errors_total", sink="archive", code="AccessDenied")

        with proxy.inject(s3_access_denied(bucket, prefix)):
            before = set(feed.positions)
            feed.put(40)
            unwritten = {k: v for k, v in feed.positions.items() if k not in before}
            wait_for(lambda: replica.get("/readyz")[0] == 503, 60, "/readyz 503 while uploads are denied")
            wait_for(lambda: denied_uploads() >= 3, 60, "three denied uploads (retried with back-off)")

            assert replica.value("vitalstream_ready") == 0
            assert replica.value("vitalstream_sink_permanent_errors", sink="archive") == 1
            first_unwritten: dict[str, float] = {}
            for shard, sequence in unwritten.values():
                first_unwritten[shard] = min(first_unwritten.get(shard, math.inf), int(sequence))
            assert first_unwritten  # the denied records reached at least one shard
            for shard, checkpoint in checkpoints(rig).items():
                if checkpoint.isdigit():  # nothing checkpointed past a record whose file is not up
                    assert int(checkpoint) < first_unwritten.get(shard, math.inf), shard
            assert not set(unwritten) & set(rig.read_back().archived)
            assert sink_error_lines(replica.logs()) == [("archive", "AccessDenied", bucket, True)]

        wait_for(lambda: replica.get("/readyz")[0] == 200, 60, "/readyz 200 once the archive takes a file")
        back = wait_drained(rig, feed)
        assert back.duplicated == 0
        assert back.order_breaks == []
        assert replica.value("vitalstream_ready") == 1
        assert replica.value("vitalstream_sink_permanent_errors", sink="archive") == 0
        assert sink_error_lines(replica.logs()) == [("archive", "AccessDenied", bucket, True)]  # still once
        assert sink_error_lines(replica.logs(), "sink recovered") == [
            ("archive", "AccessDenied", bucket, True)
        ]

        last = {}  # each device's last record (the highest seq: sorted last)
        for (device, _seq), (_, sequence) in sorted(feed.positions.items()):
            last[device] = padded_sequence(sequence)

        def states_written() -> bool:
            items = aws.scan(aws.settings.device_state_table)
            return {item["deviceId"]["S"]: item["lastSeq"]["S"] for item in items} == last

        wait_for(states_written, 60, "every device's latest state at its last record")
    finally:
        proxy.stop()
