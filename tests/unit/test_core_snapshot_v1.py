"""Snapshots written by the previous state version restore and continue exactly as that version did.

``fixtures/state_v1.json`` holds real ``STATE_VERSION`` 1 bytes (mid-episode, mid-recovery after a run,
a warm baseline, a pending episode) and the alerts version 1 raised when each device went on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.core import decode_state, encode_state
from service.core.state import STATE_VERSION
from tests.unit.builders import Device

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "state_v1.json").read_text())
CASES: dict[str, dict[str, Any]] = FIXTURE["devices"]


def _restored(device_id: str) -> Device:
    case = CASES[device_id]
    state = decode_state(bytes.fromhex(case["snapshot"]))
    return Device(
        device_id=device_id,
        t=case["t"],
        seq=case["seq"],
        kinesis_seq=case["kinesisSeq"],
        states={device_id: state},
    )


@pytest.mark.parametrize("device_id", sorted(CASES))
def test_a_v1_snapshot_continues_as_v1_did(device_id: str) -> None:
    device = _restored(device_id)

    for seconds, heart_rate, steps in CASES[device_id]["continuation"]:
        device.emit(seconds, heartRate=heart_rate, steps=steps)

    raised = [json.loads(a.to_json()) for a in device.alerts]
    for alert in raised:  # version 1 did not stamp when an alert was published
        del alert["publishedAt"], alert["delayMs"]
    assert raised == CASES[device_id]["alerts"]


@pytest.mark.parametrize("device_id", sorted(CASES))
def test_a_v1_snapshot_restores_as_the_current_version(device_id: str) -> None:
    state = _restored(device_id).states[device_id]

    assert state.version == STATE_VERSION
    assert state.last_sequence == str(CASES[device_id]["kinesisSeq"] - 1)
    assert decode_state(encode_state(state)) == state
