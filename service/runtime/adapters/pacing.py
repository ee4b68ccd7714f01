"""Pacing shared by the publishers: a token-bucket rate limit and exponential back-off with full jitter.

Both are pure arithmetic over an injected clock and random source, so tests drive them without sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """At most ``rate`` messages per second on average, with bursts of up to ``burst`` messages.

    ``reserve(n)`` takes ``n`` tokens at once and returns how long the caller must wait before sending
    them. The bucket may go into debt (a batch larger than the burst), which later reservations repay,
    so the long-run rate never exceeds ``rate`` whatever the batch sizes. ``rate`` 0 means unlimited.
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        self._rate = rate
        self._burst = burst if burst is not None else max(rate, 1.0)
        self._clock = clock
        self._tokens = self._burst
        self._updated = clock()

    @property
    def unlimited(self) -> bool:
        return self._rate == 0

    def reserve(self, n: int) -> float:
        """Take ``n`` tokens; return the seconds to wait before using them (0 when available now)."""
        if self.unlimited:
            return 0.0
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


@dataclass(slots=True)
class Backoff:
    """Exponential back-off with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
    before retry ``attempt`` (1, 2, ...) wait a uniform random time in ``[0, ceiling(attempt)]``, where
    ``ceiling(attempt) = min(cap_s, base_s * 2 ** (attempt - 1))``.

    The one back-off of the product. Callers that count their own attempts ask ``delay(attempt)``;
    callers that do not, ``next()`` (the next failure's wait) and ``reset()`` after a success, so the
    next failure starts from ``base_s`` again. Every delay lies in ``[0, cap_s]``.
    """

    base_s: float = 0.05
    cap_s: float = 5.0
    unit_random: Callable[[], float] = random.random  # uniform in [0, 1); jitter, not cryptography
    attempt: int = 0  # failures since the last ``reset``: what ``next`` counts

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 62))

    def delay(self, attempt: int) -> float:
        jitter: float = self.unit_random()
        return jitter * self.ceiling(attempt)

    def next(self) -> float:
        self.attempt += 1
        return self.delay(self.attempt)

    def reset(self) -> None:
        self.attempt = 0
