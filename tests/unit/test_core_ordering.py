"""Redelivery, device duplicates, late samples, per-device failure and snapshot round trips."""

from __future__ import annotations

import json

from service.core import DeviceState, decode_state, encode_state, iso_ms
from service.core.state import STATE_VERSION, StateFormatError
from tests.unit.builders import SEQ0, T0, Device, record, records, run, telemetry


def _at(seconds: int, **values: object) -> dict[str, object]:
    return telemetry(timestamp=iso_ms(T0 + seconds * 1000), **values)


def test_redelivered_batch_changes_nothing() -> None:
    batch = records([_at(i * 5, seq=i, heartRate=130 + i % 3) for i in range(12)])
    first = run(batch)
    assert len(first.processed) == 12
    assert len(first.alerts) == 1

    again = run(batch, first.states)

    assert (again.processed, again.alerts, again.redelivered) == ([], [], 12)
    assert again.states == {}  # nothing moved: nothing to commit


def test_inputs_are_not_mutated() -> None:
    batch = records([_at(i * 5, seq=i, heartRate=130 + i % 3) for i in range(12)])
    before = run(batch[:3]).states
    snapshot = encode_state(before["dev-1"])

    run(batch[3:], before)

    assert encode_state(before["dev-1"]) == snapshot


def test_sequence_numbers_compare_as_integers_not_strings() -> None:
    # "10..." > "9..." as integers, though not as strings; 128-bit values included.
    state = run([record(_at(0, seq=1), 9)]).states
    later = run([record(_at(5, seq=2), 10)], state)
    huge = run([record(_at(10, seq=3), 2**127 + 5)], later.states)
    stale = run([record(_at(15, seq=4), 2**127 + 4)], huge.states)

    assert len(later.processed) == 1
    assert len(huge.processed) == 1
    assert stale.redelivered == 1


def test_device_duplicates_by_seq_and_by_timestamp_are_dropped() -> None:
    result = run(
        records(
            [
                _at(0, seq=1),
                _at(5, seq=2),
                _at(5, seq=2),  # same seq: the device sent it twice
                _at(10, seq=OMIT_SEQ),
                _at(10, seq=OMIT_SEQ),  # no seq, same timestamp
            ]
        )
    )

    assert result.duplicates == 2
    assert len(result.processed) == 3


OMIT_SEQ = None


def test_late_sample_is_archived_flagged_and_does_not_move_detectors() -> None:
    result = run(records([_at(0, seq=1), _at(10, seq=3), _at(5, seq=2), _at(5, seq=2)]))

    flags = [json.loads(p.to_json()).get("outOfOrder", False) for p in result.processed]
    assert flags == [False, False, True]
    assert result.duplicates == 1
    assert result.states["dev-1"].last_event_ms == T0 + 10_000


def test_device_restart_resets_the_counter() -> None:
    result = run(records([_at(0, seq=5000), _at(5, seq=5001), _at(10, seq=0), _at(15, seq=1)]))

    assert len(result.processed) == 4
    assert result.duplicates == 0


def test_unavailable_device_is_not_applied_and_others_proceed() -> None:
    batch = records(
        [
            telemetry(deviceId="a", timestamp=iso_ms(T0)),
            telemetry(deviceId="b", timestamp=iso_ms(T0)),
            telemetry(deviceId="a", timestamp=iso_ms(T0 + 5000)),
        ]
    )

    result = run(batch, unavailable={"a"})

    assert [p.device_id for p in result.processed] == ["b"]
    assert result.failed == [str(SEQ0), str(SEQ0 + 2)]
    assert set(result.states) == {"b"}


def test_item_failures_report_each_failed_device_first_record_in_integer_order() -> None:
    batch = [
        record(telemetry(deviceId="a"), 99),
        record(telemetry(deviceId="b"), 100),
        record(telemetry(deviceId="a", timestamp=iso_ms(T0 + 5000)), 101),
        record(b"garbage", 102),
    ]
    result = run(batch)

    assert result.item_failures() == []
    assert result.item_failures({"a", "b"}) == ["99", "100"]
    assert result.item_failures({"a"}, result.rejects) == ["99", "102"]


def test_snapshot_round_trip_mid_episode_behaves_identically() -> None:
    straight, split = Device(), Device()
    phases = [(300, 70), (20, 130), (40, 130), (200, 130), (120, 72), (60, 131)]

    for seconds, bpm in phases:
        straight.emit(seconds, heartRate=bpm, steps=0)
    for seconds, bpm in phases:
        split.emit(seconds, heartRate=bpm, steps=0)
        split.states = {k: decode_state(encode_state(v)) for k, v in split.states.items()}

    assert split.alerts == straight.alerts
    assert len(split.alerts) == 2
    assert encode_state(split.states["dev-1"]) == encode_state(straight.states["dev-1"])


def test_snapshot_is_compact_and_versioned() -> None:
    device = Device()
    device.emit(600, heartRate=70, steps=3)
    blob = encode_state(device.states["dev-1"])

    assert len(blob) < 200
    assert decode_state(blob).version == STATE_VERSION


def test_unreadable_snapshot_is_a_clear_error() -> None:
    newer = encode_state(DeviceState(version=STATE_VERSION + 1))

    for blob in (b"\x00garbage", newer):
        try:
            decode_state(blob)
        except StateFormatError:
            continue
        raise AssertionError(f"{blob!r} decoded")


def test_batch_from_another_shard_is_not_mistaken_for_a_redelivery() -> None:
    parent = run([record(_at(0, seq=1), SEQ0 + 50, shard="shardId-000000000000")])
    child = run([record(_at(5, seq=2), SEQ0, shard="shardId-000000000002")], parent.states)

    assert len(child.processed) == 1
    assert child.states["dev-1"].last_shard == "shardId-000000000002"
