"""The product's one back-off (``service.runtime.adapters.pacing.Backoff``): full jitter, bounded by the cap,
a ceiling that doubles per attempt, and a counter that a success resets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.runtime.adapters.pacing import Backoff


@given(
    base_s=st.floats(min_value=0.001, max_value=10.0),
    cap_s=st.floats(min_value=0.0, max_value=60.0),
    attempt=st.integers(min_value=0, max_value=10_000),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_every_delay_lies_within_zero_and_the_cap(
    base_s: float, cap_s: float, attempt: int, draw: float
) -> None:
    backoff = Backoff(base_s=base_s, cap_s=cap_s, unit_random=lambda: draw)

    assert 0.0 <= backoff.delay(attempt) <= backoff.ceiling(attempt) <= cap_s


def test_the_ceiling_doubles_per_attempt_from_the_base_until_the_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0)

    assert [backoff.ceiling(a) for a in range(1, 8)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    assert backoff.ceiling(10**6) == 1.0  # no overflow however long the failures last


def test_full_jitter_draws_anywhere_from_zero_to_the_ceiling() -> None:
    draws = iter([0.0, 0.25, 0.999])
    backoff = Backoff(base_s=0.1, cap_s=5.0, unit_random=lambda: next(draws))

    assert [backoff.delay(3) for _ in range(3)] == pytest.approx([0.0, 0.1, 0.3996])


def test_next_counts_failures_and_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(base_s=0.1, cap_s=0.5, unit_random=lambda: 1.0)

    assert [backoff.next() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1)


def test_next_is_random_within_the_growing_ceiling() -> None:
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    delays = [backoff.next() for _ in range(12)]

    ceilings = [min(5.0, 0.1 * 2**a) for a in range(12)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(itertools.islice(delays, 6, None))) > 1  # jittered, not a fixed schedule
