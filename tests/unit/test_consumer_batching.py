"""After a takeover, the prepared batch is cut again exactly as it was; otherwise a batch is what was read."""

from __future__ import annotations

from service.consumer.batching import BatchCutter
from service.consumer.leases import Sentinel
from service.core import KinesisRecord


def records(*seqs: int) -> list[KinesisRecord]:
    return [KinesisRecord(b"{}", "shard-0", str(seq), 0) for seq in seqs]


def seqs(batch: list[KinesisRecord]) -> list[int]:
    return [r.seq_int for r in batch]


def test_without_a_prepared_span_a_batch_is_everything_read() -> None:
    cutter = BatchCutter("10", None)
    cutter.add(records(11, 12, 13))
    assert seqs(cutter.next_batch()) == [11, 12, 13]
    assert cutter.next_batch() == []


def test_the_prepared_span_is_cut_again_after_the_records_before_it() -> None:
    cutter = BatchCutter("10", ("14", "17"))
    cutter.add(records(11, 12, 14, 15))
    assert seqs(cutter.next_batch()) == [11, 12]  # applied before the interruption: skipped by the core
    assert cutter.next_batch() == []  # the span is not complete yet: read more first
    cutter.add(records(17, 18, 19))
    assert seqs(cutter.next_batch()) == [14, 15, 17]
    assert not cutter.replaying
    assert seqs(cutter.next_batch()) == [18, 19]


def test_a_span_already_checkpointed_is_not_replayed() -> None:
    assert not BatchCutter("17", ("14", "17")).replaying
    assert BatchCutter(Sentinel.TRIM_HORIZON, ("1", "3")).replaying


def test_at_the_shard_end_an_incomplete_span_is_cut_from_what_there_is() -> None:
    cutter = BatchCutter("10", ("14", "20"))
    cutter.add(records(14, 15))
    assert cutter.next_batch() == []
    assert seqs(cutter.next_batch(ended=True)) == [14, 15]
