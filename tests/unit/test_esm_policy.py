"""Lambda's Kinesis event-source-mapping retry semantics, decision by decision."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from service.tools.esm.policy import EsmConfig, GiveUpReason, Invoked, Raised, WorkItem, decide, expired


@dataclass(frozen=True)
class Rec:
    sequence_number: str
    arrival_ms: int = 0


def item(*seqs: int, attempts: int = 0) -> WorkItem[Rec]:
    return WorkItem(tuple(Rec(str(s), arrival_ms=s) for s in seqs), attempts)


def seqs(records: tuple[Rec, ...]) -> list[int]:
    return [int(r.sequence_number) for r in records]


def test_success_checkpoints_the_whole_batch() -> None:
    decision = decide(item(1, 2, 3), Invoked(), EsmConfig())

    assert (seqs(decision.done), decision.retry, decision.given_up) == ([1, 2, 3], (), ())


def test_partial_failure_retries_from_the_lowest_failed_sequence_number() -> None:
    decision = decide(item(8, 9, 10, 11), Invoked(("11", "9")), EsmConfig())

    assert seqs(decision.done) == [8]
    [retry] = decision.retry
    assert (seqs(retry.records), retry.attempts) == ([9, 10, 11], 1)


def test_sequence_numbers_are_compared_as_integers() -> None:
    decision = decide(item(99, 100, 101), Invoked(("100", "99")), EsmConfig())

    assert decision.done == ()
    assert seqs(decision.retry[0].records) == [99, 100, 101]


@pytest.mark.parametrize("bad", ["", "12345"])
def test_an_identifier_lambda_cannot_place_fails_the_whole_batch(bad: str) -> None:
    decision = decide(item(1, 2, 3), Invoked((bad,)), EsmConfig())

    assert decision.done == ()
    assert seqs(decision.retry[0].records) == [1, 2, 3]


def test_function_error_without_bisect_retries_the_whole_batch() -> None:
    decision = decide(item(1, 2, 3, attempts=2), Raised("boom"), EsmConfig())

    [retry] = decision.retry
    assert (seqs(retry.records), retry.attempts) == ([1, 2, 3], 3)


def test_function_error_with_bisect_splits_without_spending_an_attempt() -> None:
    decision = decide(item(1, 2, 3, 4, 5, attempts=1), Raised("boom"), EsmConfig(bisect_on_error=True))

    assert [(seqs(w.records), w.attempts) for w in decision.retry] == [([1, 2], 1), ([3, 4, 5], 1)]


def test_a_single_record_that_keeps_failing_is_given_up_after_the_retry_cap() -> None:
    config = EsmConfig(bisect_on_error=True, max_retry_attempts=2)

    decision = decide(item(7, attempts=2), Raised("boom"), config)

    assert (seqs(decision.given_up), decision.reason, decision.retry) == (
        [7],
        GiveUpReason.RETRIES_EXHAUSTED,
        (),
    )


def test_partial_failure_past_the_cap_gives_up_only_the_failed_tail() -> None:
    decision = decide(item(1, 2, 3, attempts=0), Invoked(("2",)), EsmConfig(max_retry_attempts=0))

    assert (seqs(decision.done), seqs(decision.given_up)) == ([1], [2, 3])


def test_unlimited_retries_never_give_up() -> None:
    decision = decide(item(1, attempts=10_000), Raised("boom"), EsmConfig(max_retry_attempts=-1))

    assert decision.given_up == ()


def test_records_older_than_the_maximum_age_are_given_up_before_invoking() -> None:
    config = EsmConfig(max_record_age_s=60)
    batch = WorkItem((Rec("1", arrival_ms=0), Rec("2", arrival_ms=50_000), Rec("3", arrival_ms=70_000)))

    old, fresh = expired(batch, now_ms=125_000, config=config)

    assert seqs(old) == [1, 2]
    assert fresh is not None
    assert seqs(fresh.records) == [3]
    assert expired(batch, now_ms=10**9, config=EsmConfig()) == ((), batch)
