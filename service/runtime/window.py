"""Lambda mode with tumbling windows: device states live in the window state, not in the table.

The Lambda analogue of a lease's resident state (``consumer.resident``). With
``TumblingWindowInSeconds`` set, Lambda passes each shard's window a ``state`` object from one
invocation to the next; ``WindowProcessor.invoke`` keeps the shard's device states there
(``core.window_state``, base64 under ``STATE_KEY``) and so, per window:

- reads a device from the device table only the first time the window sees it;
- publishes alerts and stores dead letters at once, and archives each batch's records (one object per
  batch): the one effects path (``effects.BatchEffects``), as ``Pipeline`` and the consumer run it,
  with the same dead-letter dedupe;
- writes a device's item once, with the same forward-only condition as every other write: with the
  batch that carries the device's last record of the window, as far as its cadence tells
  (``due_by_cadence``: its next record, one more step of device time after this one, would arrive
  past the window's end), at its first sight when the table has no item of it, in the window's last
  seconds when it has been quiet longer than its cadence told (``quiet_near_the_end``), else at the
  window's final invocation (``isFinalInvokeForWindow``, or ``isWindowTerminatedEarly``) — and at
  once when its status or open anomalies change. So the writes spread over the window's last cadence
  step instead of all landing in its final invocation, which holds the shard meanwhile: a device
  whose record after all comes before the end is written again at the end (rare: its cadence
  changed). And no invocation but the final one writes more than its share (``write_order``,
  ``writes_now``): ``writes_per_invocation``, more as the end nears; the rest wait in the state
  (``DUE_KEY``) for the next invocations, since every write an invocation makes delays the alerts of
  the records behind it;
- never returns a state whose JSON exceeds ``budget_bytes``: past it, it writes every dirty device
  and starts the window over with an empty state (later batches read those devices again).

Contract with Lambda (or ``service.tools.esm``):

- A batch is all-or-nothing per device, as in ``Pipeline``: a device whose alerts, archive or state
  read failed keeps its window state and its first record is reported in ``batchItemFailures``.
- The same event (same records, same input state) yields the same effects and the same state:
  alerts are put-if-absent, archive keys follow the batch, table writes only move forward.
- The final invocation raises ``WindowCommitError`` unless every dirty device's write landed (or was
  refused as behind); Lambda retries it, synchronously, until it succeeds.
- No sink error is dropped: ``WindowOutcome.errors`` (and ``WindowCommitError.errors``) hold one
  ``SinkError`` per distinct cause, for the handler to log.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from service.core import (
    BatchResult,
    DeviceState,
    KinesisRecord,
    ProcessedRecord,
    Reject,
    StateFormatError,
    decode_records,
    records_from_lambda_event,
)
from service.core.state import NONE
from service.core.telemetry import parse_rfc3339_ms
from service.core.window_state import WindowState, decode_window_state, encode_window_state
from service.runtime.effects import AppliedBatch, Position, batch_span
from service.runtime.pipeline import Pipeline
from service.runtime.ports import SinkError
from service.runtime.sink_health import BatchSinks

STATE_KEY = "vitalstream"
DUE_KEY = "vitalstreamDue"  # devices whose write waits for the next invocation, in write order
LAMBDA_STATE_LIMIT_BYTES = 1_048_576  # Lambda: "at most 1 MB per shard"; past it the window ends early
DUE_MARGIN_MS = 2_000  # a device's next record must be expected this far past the window's end
NEAR_END_MS = QUIET_MS = 10_000  # see ``quiet_near_the_end``
PACE_MS = 1_000  # about how often Lambda invokes a busy shard (its batching window's default, 1 s)
DRAIN_INVOCATIONS = 5  # a queue of writes is spread over at most this many invocations


class WindowCommitError(Exception):
    """The window's device states did not all reach the device table; the invocation must fail.
    ``errors``: why, one ``SinkError`` per distinct cause (also those of the invocation's batch)."""

    def __init__(self, message: str, errors: tuple[SinkError, ...]) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """The tumbling-window fields of a Kinesis event (``Records`` are decoded by the core)."""

    shard_id: str
    state: Mapping[str, Any]
    final: bool
    terminated_early: bool
    end_ms: int | None = None  # the window's end (``window.end``), when the event says it
    due: tuple[str, ...] = ()  # the state's ``DUE_KEY``, in the order they are to be written

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> WindowEvent:
        records = event.get("Records") or []
        shard = event.get("shardId") or (records[0].get("eventID", "").partition(":")[0] if records else "")
        window = event.get("window")
        end = window.get("end") if isinstance(window, Mapping) else None
        state = event.get("state") or {}
        due = state.get(DUE_KEY) if isinstance(state, Mapping) else None
        return cls(
            str(shard),
            state,
            bool(event.get("isFinalInvokeForWindow")),
            bool(event.get("isWindowTerminatedEarly")),
            parse_rfc3339_ms(end) if isinstance(end, str) else None,
            tuple(dict.fromkeys(str(d) for d in due)) if isinstance(due, list) else (),
        )


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """``state`` and ``failures`` make the response; the rest is for metrics and tests."""

    state: dict[str, Any]
    failures: list[str]
    loaded: int = 0
    written: int = 0
    restarted: bool = False  # the state reached the budget: written out, the window starts over
    errors: tuple[SinkError, ...] = ()  # every sink error of the invocation, one per distinct cause
    result: BatchResult | None = None  # what the core made of the batch (None: the event had no records)
    failed_devices: frozenset[str] = frozenset()  # devices whose effects did not all land

    @property
    def queued(self) -> int:
        """Devices whose write waits for a later invocation of the window (``DUE_KEY``)."""
        return len(self.state.get(DUE_KEY) or ())

    def response(self) -> dict[str, Any]:
        return {"state": self.state, "batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


@dataclass(frozen=True, slots=True)
class WindowProcessor:
    pipeline: Pipeline  # the core and the sinks; ``Pipeline.run`` itself is the windowless path
    budget_bytes: int = 900_000
    writes_per_invocation: int = 100  # device writes a non-final invocation makes at most; the rest wait

    def invoke(
        self, event: Mapping[str, Any], now_ms: int, dead_lettered: Collection[Position] = ()
    ) -> WindowOutcome:
        """One invocation of a shard's window. ``dead_lettered``: positions of rejects an earlier run
        of this very batch already stored; they are not stored again. Raises ``WindowCommitError``
        (final invocation, or a state past its budget) when the device table did not take every
        dirty device."""
        meta = WindowEvent.of(event)
        window = _window_of(meta)
        batch = records_from_lambda_event(event)
        failures: list[str] = []
        loaded = written = 0
        sinks = BatchSinks()
        due_next = list(meta.due)  # an invocation without records writes nothing and carries them on
        applied: AppliedBatch | None = None
        if batch.records or batch.rejects:
            window, applied, failures, loaded, written, due_next = self._process(
                window, batch.records, batch.rejects, now_ms, dead_lettered, sinks, meta
            )
        outcome = self._closed_or_carried(
            window, meta, due_next, WindowOutcome({}, failures, loaded, written), sinks
        )
        if applied is None:
            return outcome
        return replace(outcome, result=applied.result, failed_devices=applied.failed)

    def _closed_or_carried(
        self,
        window: WindowState,
        meta: WindowEvent,
        due_next: list[str],
        so_far: WindowOutcome,
        sinks: BatchSinks,
    ) -> WindowOutcome:
        """The outcome: the window written out (its end, or a state past the budget) or carried on."""
        failures, loaded, written = so_far.failures, so_far.loaded, so_far.written
        if meta.final or meta.terminated_early:
            written += self._commit(window, sinks)
            return WindowOutcome({}, failures, loaded, written, errors=sinks.distinct())
        state: dict[str, Any] = {STATE_KEY: base64.b64encode(encode_window_state(window)).decode("ascii")}
        if due_next:
            state[DUE_KEY] = due_next
        if len(json.dumps(state)) > self.budget_bytes:
            written += self._commit(window, sinks)
            return WindowOutcome({}, failures, loaded, written, restarted=True, errors=sinks.distinct())
        return WindowOutcome(state, failures, loaded, written, errors=sinks.distinct())

    def _process(
        self,
        window: WindowState,
        records: list[KinesisRecord],
        rejects: list[Reject],
        now_ms: int,
        dead_lettered: Collection[Position],
        sinks: BatchSinks,
        meta: WindowEvent,
    ) -> tuple[WindowState, AppliedBatch, list[str], int, int, list[str]]:
        """The one effects path, holding the window's states; then the window takes the moved ones.
        Written now, ``writes_per_invocation`` at most, in ``write_order``: devices whose look changed,
        those earlier invocations left due (``meta.due``), those due by their cadence that the window
        held before this batch. Returned last, for the next invocation: the ones left over, then the
        devices due by their cadence that this batch read from the table."""
        effects = self.pipeline.effects
        applied = effects.apply(
            window.shard_id,
            decode_records(records, rejects, self.pipeline.limits),
            window.states,
            now_ms,
            sinks,
            span=batch_span(records, rejects),
            dead_lettered=dead_lettered,
        )
        after = window.advanced(applied.loaded, applied.result.states, applied.latest, applied.failed)
        changed = after.changed_looks(window)
        due = (
            set()
            if meta.end_ms is None
            else due_by_cadence(after, applied.kept, window, applied.loaded, meta.end_ms)
        )
        held = set(window.states)
        arrived = max((r.arrival_ms for r in records), default=None)
        if meta.end_ms is not None and arrived is not None:
            due |= quiet_near_the_end(after, meta.end_ms, arrived)
        queue = write_order(changed, meta.due, due & held, after.dirty)
        share = writes_now(len(queue), self.writes_per_invocation, meta.end_ms, arrived)
        now_ids, later = queue[:share], queue[share:]
        written = 0
        if now_ids:  # a status change reaches the latest-state view at once; a refusal waits for the end
            now = {d: after.states[d] for d in now_ids}
            views = {d: after.latest[d] for d in now if d in after.latest}  # not every dirty device's
            latest = {d: view.record(d, after.shard_id) for d, view in views.items()}
            refused = effects.save(now, latest, sinks)
            written = len(now) - len(refused)
            after = after.cleaned(set(now) - refused)
        return after, applied, applied.failures(), len(applied.loaded), written, later + sorted(due - held)

    def _commit(self, window: WindowState, sinks: BatchSinks) -> int:
        states, latest = window.pending()
        refused = self.pipeline.effects.save(states, latest, sinks)
        if refused:
            raise WindowCommitError(
                f"{len(refused)} of {len(states)} device states were not written", sinks.distinct()
            )
        return len(states)


def write_order(
    changed: Collection[str], carried: Sequence[str], due: Collection[str], dirty: Collection[str]
) -> list[str]:
    """The dirty devices to write, in order: those whose look ``changed`` (what an operator reads off
    the item), then those ``carried`` from earlier invocations (oldest first), then those ``due`` by
    their cadence. A non-final invocation writes a prefix and carries the rest, so no invocation holds
    its shard for more than its share of the window's writes."""
    first = sorted(d for d in changed if d in dirty)
    then = [d for d in carried if d in dirty]
    last = sorted(d for d in due if d in dirty)
    return list(dict.fromkeys([*first, *then, *last]))


def writes_now(queued: int, least: int, end_ms: int | None, arrived_ms: int | None) -> int:
    """How many of ``queued`` writes an invocation makes: ``least``, or its share of draining the queue
    within ``DRAIN_INVOCATIONS`` (when the writes come faster than ``least`` an invocation), or within
    the invocations the window has left — taking Lambda to invoke a busy shard about once every
    ``PACE_MS`` (its batch's newest record ``arrived_ms``) — so its final invocation finds little."""
    invocations_left = DRAIN_INVOCATIONS
    if end_ms is not None and arrived_ms is not None:
        invocations_left = max(min((end_ms - arrived_ms) // PACE_MS, DRAIN_INVOCATIONS), 1)
    return min(queued, max(least, -(-queued // invocations_left)))


def quiet_near_the_end(window: WindowState, end_ms: int, arrived_ms: int) -> set[str]:
    """Within ``NEAR_END_MS`` of the window's end (its batch's newest record ``arrived_ms``): the dirty
    devices whose last record reached the stream ``QUIET_MS`` or more before, whose cadence misled
    ``due_by_cadence`` (a device that flushed an abnormal sample at once, then went back to buffering
    a minute of samples). Written before the end, they leave the final invocation — which holds the
    shard — only the devices that sent in its last seconds; one that sends again before the end is
    written again (rare). Arrival times, not device times: a device sending a backlog is not quiet."""
    if end_ms - arrived_ms > NEAR_END_MS:
        return set()
    return {
        device_id
        for device_id in window.dirty
        if (last := window.arrivals.get(device_id)) is not None and arrived_ms - last >= QUIET_MS
    }


def due_by_cadence(
    after: WindowState,
    kept: Sequence[ProcessedRecord],
    before: WindowState,
    loaded: Mapping[str, DeviceState],
    end_ms: int,
) -> set[str]:
    """Devices of this batch whose next record is expected past the window's end: this is their
    last record of the window. Expected: the device's newest record of the batch arrived at
    ``arrival_ms``; its next one should come one ``step`` of device time later — ``step`` being how
    far its device time moved since the state the window held (or read from the table) before the
    batch, or else what its message spans (``n`` samples a message, ``n ≥ 2``: their span times
    n / (n - 1)). Due when that is past ``end_ms`` (by ``DUE_MARGIN_MS``). Only a live device (its
    record reached the stream within one ``step`` of its device time: a backlog's device time says
    nothing of arrivals), and only one whose state moved (dirty). A device the table has no item
    of is due at once, whatever it sent: its first message may be a partial one (devices start out
    of step, a batched device's first message may hold one sample) that tells no cadence, and one
    write at a device's first sight keeps a fleet that starts at once from landing whole in one
    final invocation (its writes are paced like any other: ``writes_now``)."""
    times: dict[str, list[ProcessedRecord]] = {}
    for record in kept:
        times.setdefault(record.device_id, []).append(record)
    due: set[str] = set()
    for device_id, records in times.items():
        newest = max(records, key=lambda r: r.event_ms)
        held = before.states.get(device_id) or loaded.get(device_id)
        if device_id not in after.dirty:
            continue
        if held is None:  # new to the table: its cadence untold (its message maybe a partial one)
            due.add(device_id)
            continue
        if held.last_event_ms != NONE:
            step = newest.event_ms - held.last_event_ms
        elif len(records) >= 2:
            span = newest.event_ms - min(r.event_ms for r in records)
            step = span * len(records) // (len(records) - 1)
        else:
            continue
        live = newest.arrival_ms - newest.event_ms <= step  # device time stands for arrival time
        if step > 0 and live and newest.arrival_ms + step >= end_ms + DUE_MARGIN_MS:
            due.add(device_id)
    return due


def _window_of(meta: WindowEvent) -> WindowState:
    """The window's state so far; a fresh one when the window has none yet (or one of another
    shard's, which Lambda never passes: state does not cross resharding)."""
    encoded = meta.state.get(STATE_KEY)
    if not isinstance(encoded, str):
        return WindowState(meta.shard_id)
    try:
        window = decode_window_state(binascii.a2b_base64(encoded, strict_mode=True))
    except (binascii.Error, ValueError) as exc:
        raise StateFormatError(f"window state is not base64: {exc}") from exc
    if meta.shard_id and window.shard_id != meta.shard_id:
        return WindowState(meta.shard_id)
    return window
