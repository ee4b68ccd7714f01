"""What a device (or the bridge) hands to a publisher, and what a publisher reports back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """One device message as it leaves the device. ``payload`` is the telemetry JSON as sent (it may
    be malformed on purpose: an injected fault); ``event_ms`` is the device-clock time it describes,
    ``send_ms`` the fleet time at which it is sent (later than ``event_ms`` for delayed or
    out-of-order delivery, reconnect bursts)."""

    device_id: str
    payload: bytes
    event_ms: int
    send_ms: int


@dataclass(slots=True)
class PublishReport:
    """Counts over a publisher's life: ``sent`` accepted by the target, ``retried`` re-sent after a
    partial failure or throttle, ``failed`` given up on after the retry budget."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: PublishReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed


class Publisher(Protocol):
    def publish(self, messages: Sequence[Message]) -> PublishReport:
        """Deliver ``messages`` (in order per device); return what happened to them."""
        ...

    def close(self) -> None:
        """Flush anything in flight and release connections."""
        ...
