"""``ShardCursor`` and ``shard_listing``: the shard-reading decisions the consumer's ``PollingReader``
and the local event source mapping's ``PolledShard`` share, driven with API answers alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from service.runtime.consumer.shard_cursor import (
    TRIM_HORIZON,
    ShardCursor,
    list_shards,
    list_shards_async,
    shard_listing,
)

SHARD = "shardId-000000000001"
STREAM = "telemetry"
ARRIVAL = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def api_record(sequence: int) -> dict[str, Any]:
    return {
        "Data": b'{"deviceId":"dev-1"}',
        "SequenceNumber": str(sequence),
        "ApproximateArrivalTimestamp": ARRIVAL,
        "PartitionKey": "dev-1",
    }


def answer(
    *sequences: int, following: str | None = "it-next", behind: int | None = 0, **extra: Any
) -> dict[str, Any]:
    response: dict[str, Any] = {"Records": [api_record(s) for s in sequences], **extra}
    if following is not None:
        response["NextShardIterator"] = following
    if behind is not None:
        response["MillisBehindLatest"] = behind
    return response


# --- where a new iterator starts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "start"),
    [
        (TRIM_HORIZON, {"ShardIteratorType": "TRIM_HORIZON"}),
        ("4960", {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": "4960"}),
    ],
)
def test_a_new_cursor_starts_at_its_checkpoint(checkpoint: str, start: dict[str, str]) -> None:
    cursor = ShardCursor(SHARD, checkpoint)

    assert cursor.iterator is None
    assert cursor.iterator_request(STREAM) == {"StreamName": STREAM, "ShardId": SHARD, **start}


def test_after_records_a_new_iterator_starts_after_the_last_one_handed_out() -> None:
    cursor = ShardCursor(SHARD, "100")
    cursor.started({"ShardIterator": "it-1"})
    cursor.answer(answer(101, 102, 103))

    assert cursor.position == "103"
    assert cursor.iterator_request(STREAM)["StartingSequenceNumber"] == "103"


def test_an_empty_answer_keeps_the_position() -> None:
    cursor = ShardCursor(SHARD, "100")
    cursor.answer(answer(101))
    cursor.answer(answer())

    assert cursor.position == "101"


# --- expired iterator --------------------------------------------------------------------------


def test_an_expired_iterator_is_recovered_from_the_last_record_handed_out() -> None:
    cursor = ShardCursor(SHARD, TRIM_HORIZON)
    assert cursor.started({"ShardIterator": "it-1"}) == "it-1"
    cursor.answer(answer(7, 8, following="it-2"))
    assert cursor.iterator == "it-2"

    cursor.expired()

    assert cursor.iterator is None  # the next read asks for a new one...
    assert cursor.iterator_request(STREAM) == {  # ...after record 8: nothing read twice, nothing skipped
        "StreamName": STREAM,
        "ShardId": SHARD,
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "StartingSequenceNumber": "8",
    }


def test_an_iterator_expired_before_any_record_is_recovered_from_the_checkpoint() -> None:
    cursor = ShardCursor(SHARD, "55")
    cursor.started({"ShardIterator": "it-1"})
    cursor.answer(answer())
    cursor.expired()

    assert cursor.iterator_request(STREAM)["StartingSequenceNumber"] == "55"


# --- what an answer means ----------------------------------------------------------------------


def test_an_answer_hands_out_its_records_in_order_with_the_lag() -> None:
    result = ShardCursor(SHARD).answer(answer(1, 2, behind=1_500))

    assert [r.sequence_number for r in result.records] == ["1", "2"]
    assert {r.shard_id for r in result.records} == {SHARD}
    assert result.records[0].arrival_ms == int(ARRIVAL.timestamp() * 1000)
    assert (result.millis_behind, result.ended) == (1_500, False)


@pytest.mark.parametrize(
    ("closed", "response", "ended"),
    [
        (False, answer(following=None), True),  # the stream ended the shard (AWS, kinesis-mock)
        (False, answer(3, following=None), True),  # its last records and its end in one answer
        (False, answer(behind=0), False),  # an open shard at its tip goes on
        (True, answer(behind=0), True),  # closed, at its tip, nothing more (moto never ends it)
        (True, answer(3, behind=0), False),  # closed, but this read still found records
        (True, answer(behind=250), False),  # closed, not at its tip yet
        (True, answer(behind=None), False),  # closed, lag not reported: not known to be at the tip
    ],
)
def test_when_an_answer_ends_the_shard(closed: bool, response: dict[str, Any], ended: bool) -> None:
    cursor = ShardCursor(SHARD, closed=closed)

    assert cursor.answer(response).ended is ended
    assert cursor.ended is ended


def test_a_shard_learnt_closed_later_ends_at_its_next_empty_read_at_the_tip() -> None:
    cursor = ShardCursor(SHARD)
    assert not cursor.answer(answer(behind=0)).ended
    cursor.closed = True  # ListShards now reports an ending sequence number

    assert cursor.answer(answer(behind=0)).ended


def test_child_shards_are_passed_on() -> None:
    children = [{"ShardId": "shardId-000000000002", "ParentShards": [SHARD]}]

    result = ShardCursor(SHARD).answer(answer(following=None, ChildShards=children))

    assert result.child_shards == tuple(children)
    assert result.ended


# --- ListShards, all pages ---------------------------------------------------------------------

PAGES = {
    None: {"Shards": [{"ShardId": "a"}, {"ShardId": "b"}], "NextToken": "t1"},
    "t1": {"Shards": [{"ShardId": "c"}], "NextToken": "t2"},
    "t2": {"Shards": [], "NextToken": ""},
}


class FakeListShards:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return PAGES[kwargs.get("NextToken")]


EXPECTED_CALLS = [{"StreamName": STREAM}, {"NextToken": "t1"}, {"NextToken": "t2"}]


def test_listing_asks_for_every_page_with_the_token_alone() -> None:
    call = FakeListShards()

    shards = list_shards(call, STREAM)

    assert [s["ShardId"] for s in shards] == ["a", "b", "c"]
    assert call.calls == EXPECTED_CALLS  # ListShards refuses StreamName beside NextToken


def test_the_awaitable_driver_makes_the_same_calls() -> None:
    call = FakeListShards()

    async def awaitable(**kwargs: Any) -> dict[str, Any]:
        return call(**kwargs)

    shards = asyncio.run(list_shards_async(awaitable, STREAM))

    assert [s["ShardId"] for s in shards] == ["a", "b", "c"]
    assert call.calls == EXPECTED_CALLS


def test_a_single_page_without_a_token_is_the_whole_listing() -> None:
    listing = shard_listing(STREAM)
    assert next(listing) == {"StreamName": STREAM}
    with pytest.raises(StopIteration) as done:
        listing.send({"Shards": [{"ShardId": "only"}]})

    assert done.value.value == [{"ShardId": "only"}]
