"""Exponential back-off with full jitter (the AWS Architecture Blog's "full jitter"), as a value."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """``next()`` gives the next wait in seconds: uniform in [0, min(cap, base * 2**attempt)].

    ``reset()`` after a success, so the next failure starts small again.
    """

    base_s: float = 0.1
    cap_s: float = 5.0
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(0.0, ceiling)  # jitter, not cryptography

    def reset(self) -> None:
        self.attempt = 0
