"""The embedded MiniStack's Kinesis mends (``service/tools/emulators/ministack_server.py``) give the answers
MiniStack's own code gives, without its scans over every record of the stream."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.tools.emulators import ministack_server

HOUR_S = 3600


def shard(*arrivals: float, first_seq: int = 10**29) -> dict[str, Any]:
    return {
        "records": [
            {"SequenceNumber": f"{first_seq + i:030d}", "ApproximateArrivalTimestamp": at}
            for i, at in enumerate(arrivals)
        ]
    }


def scan_position(records: list[dict[str, Any]], it_type: str, seq: str, at_ts: Any) -> int | None:
    """MiniStack 1.5.33's ``_start_position`` for the sequence-number types: a scan from the start."""
    if it_type == "AT_SEQUENCE_NUMBER":
        return next((i for i, r in enumerate(records) if r["SequenceNumber"] >= seq), len(records))
    if it_type == "AFTER_SEQUENCE_NUMBER":
        return next((i for i, r in enumerate(records) if r["SequenceNumber"] > seq), len(records))
    return None


@pytest.fixture(autouse=True)
def original(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ministack_server, "_original_start_position", scan_position, raising=False)


def test_records_past_the_retention_are_dropped_oldest_first_and_the_rest_kept() -> None:
    now = time.time()
    stream = {"RetentionPeriodHours": 24, "shards": {"a": shard(now - 25 * HOUR_S, now - 24.5 * HOUR_S, now)}}
    stream["shards"]["b"] = shard(now - 1, now)
    ministack_server._expire_prefix(stream)
    assert [r["ApproximateArrivalTimestamp"] for r in stream["shards"]["a"]["records"]] == [now]
    assert len(stream["shards"]["b"]["records"]) == 2


def test_nothing_is_copied_while_nothing_has_expired() -> None:
    fresh = shard(time.time())
    records = fresh["records"]
    ministack_server._expire_prefix({"RetentionPeriodHours": 24, "shards": {"a": fresh}})
    assert fresh["records"] is records


@given(
    count=st.integers(0, 40),
    offset=st.integers(-3, 45),
    it_type=st.sampled_from(["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]),
)
def test_sequence_positions_are_the_ones_a_scan_finds(count: int, offset: int, it_type: str) -> None:
    first = 10**29
    records = shard(*([1.0] * count), first_seq=first)["records"]
    seq = f"{first + offset:030d}"
    assert ministack_server._position_of(records, it_type, seq, None) == scan_position(
        records, it_type, seq, None
    )


def test_other_iterator_types_are_left_to_ministack() -> None:
    assert ministack_server._position_of([], "LATEST", "", None) is None  # what the scan stand-in answers


def test_expired_iterators_are_swept_at_most_every_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    sweeps: list[None] = []
    monkeypatch.setattr(
        ministack_server, "_original_expire_iterators", lambda: sweeps.append(None), raising=False
    )
    monkeypatch.setattr(ministack_server, "_last_sweep", 0.0)
    start = 1_000.0
    swept = [ministack_server._sweep_if_due(start + at) for at in (0.0, 0.5, 9.9, 10.0, 10.1, 25.0)]
    assert swept == [True, False, False, True, False, True]
    assert len(sweeps) == 3
