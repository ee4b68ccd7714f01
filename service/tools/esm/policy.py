"""What Lambda's Kinesis event source mapping does after each invocation, as pure decisions.

One shard is a queue of work items, oldest first; only the front item is ever invoked, so records
of a shard are handed to the function in order and a failing record holds back everything after it
(as Lambda does), until the retry budget or the record-age limit lets it go. Per invocation:

- success with no ``batchItemFailures``: the item is done;
- ``batchItemFailures``: everything below the lowest failed sequence number is done; the rest is
  retried as one item (one attempt used). An identifier that is not in the batch, or an empty one,
  fails the whole batch, as in Lambda;
- a function error: with bisect enabled and more than one record, the item splits into two halves,
  each retried on its own (splitting uses no attempt); otherwise the whole item is retried;
- an item whose attempts exceed ``max_retry_attempts`` (-1: never) is given up: its metadata goes to
  the on-failure destination and the shard moves past it;
- records older than ``max_record_age_s`` (-1: never) are given up before invoking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar


class Positioned(Protocol):
    @property
    def sequence_number(self) -> str: ...

    @property
    def arrival_ms(self) -> int: ...


R = TypeVar("R", bound=Positioned)


STATE_LIMIT_BYTES = 1_048_576  # Lambda's tumbling-window state: at most 1 MB per shard


@dataclass(frozen=True, slots=True)
class EsmConfig:
    """The mapping's settings, named as in ``CreateEventSourceMapping``. ``tumbling_window_s`` 0: no
    windows (each invocation stands alone); ``state_limit_bytes``: where a window ends early."""

    batch_size: int = 100
    batching_window_s: float = 0.0
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    bisect_on_error: bool = False
    tumbling_window_s: int = 0
    state_limit_bytes: int = STATE_LIMIT_BYTES


class GiveUpReason(StrEnum):
    RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
    RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


@dataclass(frozen=True, slots=True)
class WorkItem(Generic[R]):
    records: tuple[R, ...]
    attempts: int = 0  # retries already used on these records


@dataclass(frozen=True, slots=True)
class Invoked:
    """The function returned; ``failures`` are its ``batchItemFailures`` identifiers; ``state`` the
    window state it returned (tumbling windows only)."""

    failures: tuple[str, ...] = ()
    state: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Raised:
    """The function raised (or timed out): Lambda sees a function error."""

    error: str


Outcome = Invoked | Raised


@dataclass(frozen=True, slots=True)
class Decision(Generic[R]):
    """``done`` records are checkpointed; ``retry`` replaces the item at the front of the queue;
    ``given_up`` go to the on-failure destination (and are checkpointed too)."""

    done: tuple[R, ...] = ()
    retry: tuple[WorkItem[R], ...] = ()
    given_up: tuple[R, ...] = ()
    reason: GiveUpReason | None = None


def expired(item: WorkItem[R], now_ms: int, config: EsmConfig) -> tuple[tuple[R, ...], WorkItem[R] | None]:
    """Split off the records too old to invoke; the rest (None when nothing is left)."""
    if config.max_record_age_s < 0:
        return (), item
    limit = now_ms - config.max_record_age_s * 1000
    old = tuple(r for r in item.records if r.arrival_ms < limit)
    if not old:
        return (), item
    fresh = tuple(r for r in item.records if r.arrival_ms >= limit)
    return old, (WorkItem(fresh, item.attempts) if fresh else None)


def decide(item: WorkItem[R], outcome: Outcome, config: EsmConfig) -> Decision[R]:
    records = item.records
    if isinstance(outcome, Invoked):
        if not outcome.failures:
            return Decision(done=records)
        cut = _lowest_failed_index(records, outcome.failures)
        return _retry(WorkItem(records[cut:], item.attempts), config, done=records[:cut])
    if config.bisect_on_error and len(records) > 1:
        half = len(records) // 2
        return Decision(
            retry=(WorkItem(records[:half], item.attempts), WorkItem(records[half:], item.attempts))
        )
    return _retry(item, config)


def _lowest_failed_index(records: Sequence[R], failures: Sequence[str]) -> int:
    index = {r.sequence_number: i for i, r in enumerate(records)}
    positions = [index.get(identifier) for identifier in failures]
    if any(p is None for p in positions):
        return 0  # an identifier Lambda cannot place fails the whole batch
    return min(p for p in positions if p is not None)


def _retry(item: WorkItem[R], config: EsmConfig, done: tuple[R, ...] = ()) -> Decision[R]:
    if 0 <= config.max_retry_attempts <= item.attempts:
        return Decision(done=done, given_up=item.records, reason=GiveUpReason.RETRIES_EXHAUSTED)
    return Decision(done=done, retry=(WorkItem(item.records, item.attempts + 1),))
