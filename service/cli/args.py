"""Argument types shared by the subcommands: a bad value names itself in argparse's usage error."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}


def parse_duration_ms(text: str) -> int:
    """``"90"`` (seconds), ``"500ms"``, ``"120s"``, ``"2m"``, ``"1.5h"``, ``"1d"`` → milliseconds.
    Raises ``ValueError`` naming the text when it is not one of these."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 1h)")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def duration_ms(minimum_ms: int = 1) -> Callable[[str], int]:
    """A duration such as ``60s``, ``5m`` or ``1h``, in milliseconds, at least ``minimum_ms``."""

    def parse(text: str) -> int:
        try:
            value = parse_duration_ms(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < minimum_ms:
            raise argparse.ArgumentTypeError(f"must be at least {minimum_ms / 1000:g}s, got {text!r}")
        return value

    return parse
