"""Multi-sample messages through the core: each sample a record of its own, rejected alone, kept once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.core import KinesisRecord, RejectReason, decode_records, iso_ms
from service.core.envelope import MessageLimits
from service.core.telemetry import parse_rfc3339_ms
from tests.unit.builders import OMIT, SEQ0, SHARD, T0, Device, kpl_aggregate, record, run, telemetry


def reading(t: int, **overrides: Any) -> dict[str, Any]:
    """A sample of a batch: the single-sample fields but ``deviceId``."""
    sample = telemetry(timestamp=iso_ms(t), **overrides)
    del sample["deviceId"]
    return sample


def batch(samples: list[dict[str, Any]], device_id: str = "dev-1", **members: Any) -> bytes:
    return json.dumps({"deviceId": device_id, "samples": samples, **members}, separators=(",", ":")).encode()


def batch_record(samples: list[Any], seq: int = SEQ0) -> KinesisRecord:
    """The record of a batch sent a second after its newest sample was taken."""
    stamps = [parse_rfc3339_ms(s.get("timestamp", "")) for s in samples if isinstance(s, dict)]
    arrival = max((t for t in stamps if t is not None), default=T0) + 1_000
    return record(batch(samples), seq, arrival_ms=arrival)


def twelve(t0: int = T0, **overrides: Any) -> list[dict[str, Any]]:
    return [reading(t0 + i * 5_000, seq=100 + i, **overrides) for i in range(12)]


def test_a_twelve_sample_message_is_twelve_records_identified_by_their_index() -> None:
    result = run([batch_record(twelve())])

    assert [r.sub_sequence_number for r in result.processed] == list(range(12))
    assert {r.sequence_number for r in result.processed} == {str(SEQ0)}
    assert [r.device_seq for r in result.processed] == list(range(100, 112))
    assert result.rejects == []
    line = json.loads(result.processed[3].to_json())
    assert next(iter(line)) == "deviceId"  # one table reads single and batched messages alike
    assert (line["deviceId"], line["seq"], line["subSequenceNumber"], line["shardId"]) == (
        "dev-1",
        103,
        3,
        SHARD,
    )


def test_a_single_sample_message_is_read_as_before() -> None:
    (processed,) = run([record(telemetry(seq=1), SEQ0)]).processed

    assert processed.sub_sequence_number is None
    assert "subSequenceNumber" not in json.loads(processed.to_json())


def test_a_bad_sample_is_rejected_alone_with_its_index_and_reason() -> None:
    samples = twelve()
    samples[4]["heartRate"] = 999
    samples[7] = {"timestamp": "yesterday", "heartRate": 70, "steps": 0}

    result = run([batch_record(samples)])

    assert [r.sub_sequence_number for r in result.processed] == [0, 1, 2, 3, 5, 6, 8, 9, 10, 11]
    reasons = [
        (r.sample_index, r.sub_sequence_number, r.reason, r.field, r.device_id) for r in result.rejects
    ]
    assert reasons == [
        (4, 4, RejectReason.OUT_OF_RANGE, "heartRate", "dev-1"),
        (7, 7, RejectReason.INVALID_TIMESTAMP, "timestamp", "dev-1"),
    ]
    dead_letter = result.rejects[0].to_dict()
    assert (dead_letter["sampleIndex"], dead_letter["subSequenceNumber"]) == (4, 4)
    assert json.loads(result.rejects[0].data)["heartRate"] == 999  # the sample's own bytes


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (
            b'{"samples":[{"timestamp":"2026-11-28T02:00:00.000Z","heartRate":70,"steps":0}]}',
            "missing_field",
            "deviceId",
        ),
        (b'{"deviceId":7,"samples":[]}', "wrong_type", "deviceId"),
        (b'{"deviceId":"a b","samples":[]}', "invalid_device_id", "deviceId"),
        (b'{"deviceId":"dev-1","samples":{"heartRate":70}}', "wrong_type", "samples"),
        (b'{"deviceId":"dev-1","samples":null}', "wrong_type", "samples"),
        (b'{"deviceId":"dev-1","samples":[]}', "out_of_range", "samples"),
    ],
)
def test_a_broken_envelope_is_one_reject_with_its_reason(payload: bytes, reason: str, field: str) -> None:
    result = run([record(payload, SEQ0, arrival_ms=T0)])

    assert result.processed == []
    ((got_reason, got_field, index),) = [(r.reason.value, r.field, r.sample_index) for r in result.rejects]
    assert (got_reason, got_field, index) == (reason, field, None)


def test_more_samples_than_the_limit_is_one_reject() -> None:
    limits = MessageLimits(max_samples=12)
    fits = decode_records([batch_record(twelve())], limits=limits)
    over = decode_records([batch_record([*twelve(), reading(T0 + 60_000)])], limits=limits)

    assert (len(fits.samples), fits.rejects) == (12, [])
    assert over.samples == []
    assert [r.reason for r in over.rejects] == [RejectReason.TOO_MANY_SAMPLES]


def test_a_message_over_the_size_limit_is_one_reject_whatever_its_shape() -> None:
    limits = MessageLimits(max_bytes=1_000)
    padded_single = record(telemetry(seq=1, note="x" * 1_000), SEQ0)
    padded_batch = batch_record(twelve(), SEQ0 + 1)

    decoded = decode_records([padded_single, padded_batch], limits=limits)

    assert decoded.samples == []
    assert [r.reason for r in decoded.rejects] == [RejectReason.MESSAGE_TOO_LARGE] * 2


def test_a_samples_own_device_id_must_be_its_batchs() -> None:
    samples = twelve()[:3]
    samples[0]["deviceId"] = "dev-1"
    samples[1]["deviceId"] = "dev-2"

    result = run([batch_record(samples)])

    assert [r.sub_sequence_number for r in result.processed] == [0, 2]
    assert [(r.reason, r.sample_index) for r in result.rejects] == [(RejectReason.DEVICE_ID_MISMATCH, 1)]
    assert list(json.loads(result.processed[0].to_json())).count("deviceId") == 1


def test_envelope_members_and_unknown_sample_fields_reach_every_line() -> None:
    samples = twelve()[:2]
    samples[1]["ppg"] = [1, 2, 3]
    spaced = json.dumps({"samples": samples, "firmware": "3.2.1", "deviceId": "dev-1"}).encode()

    result = run([record(spaced, SEQ0, arrival_ms=T0 + 10_000)])

    lines = [json.loads(r.to_json()) for r in result.processed]
    assert [(line["deviceId"], line["firmware"]) for line in lines] == [("dev-1", "3.2.1")] * 2
    assert lines[1]["ppg"] == [1, 2, 3]


def test_samples_that_are_not_objects_are_rejected_alone() -> None:
    samples: list[Any] = twelve()[:3]
    samples[1] = [1, 2]

    result = run([batch_record(samples)])

    assert [r.sub_sequence_number for r in result.processed] == [0, 2]
    assert [(r.reason, r.sample_index) for r in result.rejects] == [(RejectReason.NOT_AN_OBJECT, 1)]


def test_a_kpl_aggregate_of_batches_numbers_its_samples_across_user_records() -> None:
    first, second = twelve()[:3], twelve(T0 + 15_000)[:2]
    data = kpl_aggregate(
        [("dev-1", batch(first)), ("dev-1", json.dumps(telemetry(seq=9)).encode()), ("dev-1", batch(second))]
    )

    decoded = decode_records([KinesisRecord(data, SHARD, str(SEQ0), T0 + 30_000)])

    assert [s.sub for s in decoded.samples] == [0, 1, 2, 3, 4, 5]
    assert [s.index for s in decoded.samples] == [0, 1, 2, None, 0, 1]


def test_a_redelivered_batch_has_no_effect_and_a_partly_applied_one_resumes_after_its_last_sample() -> None:
    message = batch_record(twelve())
    first = run([message])
    states = dict(first.states)

    again = run([message], states)
    assert (again.processed, again.alerts, again.redelivered) == ([], [], 12)

    first_half = run([batch_record(twelve()[:6])])  # a run that stored the state after sample 5
    resumed = run([message], first_half.states)
    assert [r.sub_sequence_number for r in resumed.processed] == [6, 7, 8, 9, 10, 11]
    assert (resumed.duplicates, resumed.redelivered) == (0, 6)


def test_an_unavailable_device_fails_its_record_so_the_whole_message_comes_again() -> None:
    result = run([batch_record(twelve())], unavailable=["dev-1"])

    assert result.processed == []
    assert result.item_failures() == [str(SEQ0)]


def test_a_twenty_minute_backlog_is_detected_in_event_time_once_and_says_it_is_late() -> None:
    device = Device()
    device.emit(900, heartRate=70, steps=0)  # 15 minutes at rest: tachycardia is possible
    offline_from = device.t
    backlog = device.samples(600, heartRate=70, steps=0) + device.samples(120, heartRate=135, steps=0)
    backlog += device.samples(480, heartRate=70, steps=0)
    for sample in backlog:
        del sample["deviceId"]
    arrival = device.t + 2_000
    uploaded = [
        record(batch(backlog[i : i + 12]), device.kinesis_seq + n, arrival_ms=arrival)
        for n, i in enumerate(range(0, len(backlog), 12))
    ]

    result = run(uploaded, device.states, now_ms=arrival + 500)

    assert len(result.processed) == len(backlog) == 240
    assert (result.rejects, result.late, result.duplicates) == ([], 0, 0)
    (alert,) = result.alerts  # one episode, one alert; the 20-minute gap before it is no sensor fault
    assert alert.type.value == "TACHYCARDIA"
    assert alert.startedAt == iso_ms(offline_from + 600_000)
    assert alert.detectedAt == iso_ms(offline_from + 630_000)
    assert alert.publishedAt == iso_ms(arrival + 500)
    assert alert.delayMs == arrival + 500 - (offline_from + 630_000)


def test_a_late_message_after_newer_ones_is_archived_late_and_counted() -> None:
    newer = batch_record(twelve(T0 + 60_000), SEQ0)
    older = batch_record([reading(T0 + i * 5_000, seq=100 - 12 + i) for i in range(12)], SEQ0 + 1)
    repeat = batch_record(twelve(T0 + 60_000), SEQ0 + 2)

    result = run([newer, older, repeat])

    assert (len(result.processed), result.late, result.duplicates) == (24, 12, 12)
    assert all(r.out_of_order for r in result.processed[12:])


def test_an_omitted_optional_field_in_a_sample_is_fine() -> None:
    result = run([batch_record([reading(T0, spo2=OMIT, skinTemp=OMIT, battery=OMIT)])])

    assert len(result.processed) == 1
