"""Idle devices leave a replica's resident state for real: a ``vitalstream consume`` process on the
emulator drops a silent device at a file cut, with its state in the device table, and when the device
sends again its episode goes on from that state (no second alert), nothing lost or archived twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import AwsStack
from tests.integration.consumer_rig import ConsumerRig, wait_drained, wait_for

pytestmark = pytest.mark.integration
IDLE_MS = 4_000  # files are cut every 2 s of arrival time (consumer_rig): a few cuts of silence


@pytest.fixture
def rig(aws: AwsStack, kinesis_endpoint: str, tmp_path: Path) -> Iterator[ConsumerRig]:
    rig = ConsumerRig(aws, kinesis_endpoint, 1, tmp_path / "rig")
    yield rig
    rig.close()


def test_a_silent_device_leaves_memory_and_its_episode_goes_on_when_it_returns(rig: ConsumerRig) -> None:
    (replica,) = rig.replicas.start(1, extra_env={"VITALSTREAM_DEVICE_IDLE_EVICT_MS": str(IDLE_MS)})
    rig.replicas.wait_ready()
    patient = "patient-idle"
    feed = rig.feed(devices=20, rate=10)  # each of them every 2 s: never idle
    feed.start()
    feed.put_episode(patient, 10)  # 50 s at 35 bpm in its own time: a bradycardia episode, raised
    wait_for(lambda: patient in {a["deviceId"] for a in rig.alerts()}, 60, "the patient's alert")

    evicted = lambda: replica.value("vitalstream_devices_evicted_total") >= 1  # noqa: E731
    wait_for(evicted, 60, "the silent patient to leave the replica's memory")
    table = rig.aws.settings.device_state_table
    item = rig.aws.dynamodb.get_item(TableName=table, Key={"deviceId": {"S": patient}}, ConsistentRead=True)
    assert "state" in item["Item"]  # its latest state, for when it comes back

    feed.put_episode(patient, 10)  # the same episode goes on, in the device's own time
    time.sleep(4)
    feed.stop()
    back = wait_drained(rig, feed)
    assert back.duplicated == 0
    assert back.order_breaks == []
    assert [a["type"] for a in rig.alerts() if a["deviceId"] == patient] == ["BRADYCARDIA"]
