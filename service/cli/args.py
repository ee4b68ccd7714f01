"""Argument types shared by the subcommands: a bad value names itself in argparse's usage error."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from simulator.scenario import parse_duration_ms


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
