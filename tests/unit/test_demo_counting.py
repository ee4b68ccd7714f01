"""The demo counts per sample: acknowledgements, latencies, the expected set and the report's losses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from service.runtime.accounting import RequestCounts
from service.tools.demo.ledger import AckLedger
from service.tools.demo.report import Expected, SinkContents, build_report
from service.tools.demo.samples import FOREIGN_SAMPLE, single_samples

T0_MS = 1_795_824_000_000


def _sample(second: int, seq: int, **fields: Any) -> dict[str, Any]:
    return {
        "timestamp": f"2026-11-28T00:00:{second:02d}.000Z",
        "heartRate": 70,
        "steps": 0,
        "seq": seq,
    } | fields


def _batch(device: str, *samples: Any) -> bytes:
    return json.dumps({"deviceId": device, "samples": list(samples)}, separators=(",", ":")).encode()


def _single(device: str, second: int, seq: int) -> bytes:
    return json.dumps({"deviceId": device} | _sample(second, seq), separators=(",", ":")).encode()


def _event(*records: tuple[str, str, bytes]) -> dict[str, Any]:
    """A Lambda Kinesis event of (shard, sequence number, data) records."""
    return {
        "Records": [
            {
                "eventID": f"{shard}:{sequence}",
                "kinesis": {"sequenceNumber": sequence, "data": base64.b64encode(data).decode()},
            }
            for shard, sequence, data in records
        ]
    }


# --- a message's samples ------------------------------------------------------------------------


def test_a_batch_gives_one_single_sample_payload_per_sample_device_id_first() -> None:
    payload = _batch("d-1", _sample(0, 1), "not an object", {"deviceId": "d-1"} | _sample(5, 2))
    singles = single_samples(payload)
    assert [json.loads(s) if s.startswith(b"{") else s for s in singles] == [
        {"deviceId": "d-1"} | _sample(0, 1),
        b'"not an object"',
        {"deviceId": "d-1"} | _sample(5, 2),
    ]
    assert list(json.loads(singles[0])) == ["deviceId", "timestamp", "heartRate", "steps", "seq"]


@pytest.mark.parametrize(
    "payload",
    [
        _single("d-1", 0, 1),
        b"\xff\xfe garbage",
        b'{"deviceId":"d-1","samples":[]}',  # an envelope reject: one
        b'{"deviceId":"d-1","samples":"many"}',
        b'{"samples":[{"timestamp":"2026-11-28T00:00:00.000Z"}]}',
    ],
)
def test_anything_but_a_batch_is_one_sample_itself(payload: bytes) -> None:
    assert single_samples(payload) == [payload]


def test_a_sample_naming_another_device_is_a_reject() -> None:
    assert single_samples(_batch("d-1", {"deviceId": "d-2"} | _sample(0, 1))) == [FOREIGN_SAMPLE]
    assert Expected().add([FOREIGN_SAMPLE]) == 1


# --- acknowledgements ---------------------------------------------------------------------------


def test_each_sample_of_an_acknowledged_record_counts_once_with_its_own_latency() -> None:
    ledger = AckLedger(lambda: 0)
    event = _event(
        ("shardId-0", "100", _batch("d-1", _sample(0, 1), _sample(5, 2), _sample(10, 3))),
        ("shardId-0", "101", _single("d-2", 10, 7)),
    )
    ack_ms = T0_MS + 12_000
    ledger.note(event, None, ack_ms)
    assert ledger.acknowledged == 4
    latency = ledger.latency()
    assert latency.count == 4
    assert (latency.p50_ms, latency.p99_ms) == (2_000.0, 12_000.0)

    ledger.note(event, {"batchItemFailures": []}, ack_ms + 1_000)  # redelivered: nothing new
    assert ledger.acknowledged == 4
    assert ledger.latency().count == 4


def test_a_failed_record_acknowledges_none_of_its_samples_until_it_comes_again() -> None:
    ledger = AckLedger(lambda: 0)
    first = ("shardId-0", "100", _batch("d-1", _sample(0, 1), _sample(5, 2)))
    failing = ("shardId-0", "101", _batch("d-1", _sample(10, 3), _sample(15, 4), _sample(20, 5)))
    ledger.note(_event(first, failing), {"batchItemFailures": [{"itemIdentifier": "101"}]}, T0_MS + 30_000)
    assert ledger.acknowledged == 2
    ledger.note(_event(failing), None, T0_MS + 31_000)
    assert ledger.acknowledged == 5


def test_samples_of_different_shards_with_the_same_sequence_number_are_different() -> None:
    ledger = AckLedger(lambda: 0)
    data = _batch("d-1", _sample(0, 1), _sample(5, 2))
    ledger.note(_event(("shardId-0", "100", data), ("shardId-1", "100", data)), None, T0_MS)
    assert ledger.acknowledged == 4


# --- what was sent, and what the sinks show --------------------------------------------------------


def test_expected_classifies_every_sample_of_a_batch_alone() -> None:
    expected = Expected()
    batch = _batch(
        "d-1", _sample(0, 1), _sample(5, 2, heartRate="72"), "{broken", _sample(10, 3), _sample(10, 3)
    )
    assert expected.add([batch, _single("d-2", 0, 9)]) == 6
    assert expected.valid == {("d-1", 1), ("d-1", 3), ("d-2", 9)}
    assert expected.rejects == 2
    assert expected.device_duplicates == 1


def _report(expected: Expected, archive: list[dict[str, Any]], dead: list[dict[str, Any]]) -> Any:
    sinks = SinkContents(archive, 1, dead, [], 1)
    return build_report(
        expected=expected,
        sinks=sinks,
        truth=[],
        latency=AckLedger(lambda: 0).latency(),
        sent=6,
        messages=2,
        samples_per_message=12,
        publish_failed=0,
        devices=2,
        duration_s=60.0,
        shards=1,
        mode="consumer",
        requests=RequestCounts(),
    )


def test_the_report_counts_losses_and_duplicate_effects_per_sample() -> None:
    expected = Expected()
    batch = _batch("d-1", _sample(0, 1), "{broken", _sample(5, 2), 17)
    expected.add([batch])
    archive = [
        {"deviceId": "d-1", "seq": 1, "subSequenceNumber": 0},
        {"deviceId": "d-1", "seq": 2, "subSequenceNumber": 2},
    ]
    dead = [
        {"shardId": "shardId-0", "sequenceNumber": "100", "subSequenceNumber": 1, "sampleIndex": 1},
        {"shardId": "shardId-0", "sequenceNumber": "100", "subSequenceNumber": 3, "sampleIndex": 3},
    ]
    clean = _report(expected, archive, dead)
    assert (clean.lost, clean.duplicate_effects) == (0, 0)
    assert (clean.sent, clean.messages, clean.samples_per_message) == (6, 2, 12)

    lossy = _report(expected, archive[:1], dead[:1])
    assert lossy.lost == 2  # one valid sample missing from the archive, one invalid from the dead letters
    doubled = _report(expected, [*archive, archive[1]], [*dead, dead[0]])
    assert doubled.duplicate_effects == 2
