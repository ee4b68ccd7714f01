"""Lambda's tumbling windows (``TumblingWindowInSeconds``) for one shard of the local event source mapping.

As Lambda documents them:

- windows follow record arrival time: ``[k·W, (k+1)·W)`` seconds since the epoch; a batch never
  spans two windows (``split_by_window``);
- each invocation gets the window's ``state`` (``{}`` at its start) and must return one — a response
  without a JSON object ``state`` is a failed invocation; a retried batch gets the same state again;
- the window ends with a final invocation (``isFinalInvokeForWindow``, no records) once the shard has
  moved past it: a record of a later window, the window's end passed on an idle shard, or the shard's
  end. It is synchronous: it is retried until it succeeds, and the shard waits. The records of a
  window are checkpointed only when its final invocation has succeeded;
- a returned state over ``STATE_LIMIT_BYTES`` ends the window early: a final invocation with that
  state and ``isWindowTerminatedEarly``, after which the same window continues with a fresh state;
- state never crosses resharding: each shard (a child too) starts its windows with ``{}``.

The last two points leave room in Lambda's wording; this is the reading chosen here, and the shim does
not depend on it (it never returns a state near the limit, ``service.runtime.window``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from service.core import iso_ms
from service.tools.esm.policy import STATE_LIMIT_BYTES, Positioned

R = TypeVar("R", bound=Positioned)


@dataclass(frozen=True, slots=True)
class Window:
    start_ms: int
    end_ms: int

    @classmethod
    def of(cls, arrival_ms: int, seconds: int) -> Window:
        width = seconds * 1000
        start = arrival_ms // width * width
        return cls(start, start + width)

    def fields(self) -> dict[str, str]:
        return {"start": iso_ms(self.start_ms), "end": iso_ms(self.end_ms)}


@dataclass(slots=True)
class OpenWindow:
    """A shard's current window: its state so far and the last record done in it (not checkpointed)."""

    window: Window
    state: dict[str, Any] = field(default_factory=dict)
    done: str | None = None

    def note_done(self, sequences: Sequence[str]) -> None:
        if sequences:
            self.done = max([*sequences, *([self.done] if self.done else [])], key=int)


def split_by_window(records: Sequence[R], seconds: int) -> list[tuple[R, ...]]:
    """Consecutive runs of ``records`` that fall in one window each, in order."""
    runs: list[tuple[R, ...]] = []
    current: list[R] = []
    window: Window | None = None
    for record in records:
        this = Window.of(record.arrival_ms, seconds)
        if window is not None and this != window and current:
            runs.append(tuple(current))
            current = []
        window = this
        current.append(record)
    if current:
        runs.append(tuple(current))
    return runs


def windowed_event(
    event: dict[str, Any],
    window: Window,
    state: dict[str, Any],
    shard_id: str,
    stream_arn: str,
    *,
    final: bool = False,
    early: bool = False,
) -> dict[str, Any]:
    return event | {
        "window": window.fields(),
        "state": state,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": early,
    }


def returned_state(response: Any) -> dict[str, Any] | None:
    """The response's ``state`` (None when it has none, which Lambda counts as a failed invocation)."""
    if isinstance(response, str | bytes):
        try:
            response = json.loads(response)
        except ValueError:
            return None
    state = response.get("state") if isinstance(response, dict) else None
    return state if isinstance(state, dict) else None


def oversized(state: dict[str, Any], limit: int = STATE_LIMIT_BYTES) -> bool:
    return len(json.dumps(state, separators=(",", ":"))) > limit
