"""Lambda mode with tumbling windows: device states live in the window state, not in the table.

The Lambda analogue of a lease's resident state (``consumer.resident``). With
``TumblingWindowInSeconds`` set, Lambda passes each shard's window a ``state`` object from one
invocation to the next; ``WindowProcessor.invoke`` keeps the shard's device states there
(``core.window_state``, base64 under ``STATE_KEY``) and so, per window:

- reads a device from the device table only the first time the window sees it;
- publishes alerts and stores dead letters at once, and archives each batch's records (one object per
  batch): the one effects path (``effects.BatchEffects``), as ``Pipeline`` and the consumer run it,
  with the same dead-letter dedupe;
- writes a device's item once, with the same forward-only condition as every other write: at once when
  its status or open anomalies change; else after the window, by the shard's next window. Writing
  every device a window moved in its final invocation would hold the shard for as long as those
  writes take (seconds, at thousands of devices a shard) while the alerts behind it wait, so the final
  invocation writes them only when they are few (``writes_per_invocation`` at most) and otherwise
  hands them all on in one object (``core.window_handoff``, ``runtime.window_handoffs``). The next
  window's first invocation adopts them as its own dirty devices — no table read for them — and its
  invocations write them paced (``write_order``, ``writes_now``): ``writes_per_invocation`` each, more
  when the queue would not drain before the window ends; the rest wait in the state (``DUE_KEY``).
  A device that sends again after its write is dirty again, and handed on again at the end;
- never returns a state whose JSON exceeds ``budget_bytes``: past it, it writes every dirty device
  and starts the window over with an empty state (later batches read those devices again).

Contract with Lambda (or ``service.tools.esm``):

- A batch is all-or-nothing per device, as in ``Pipeline``: a device whose alerts, archive or state
  read failed keeps its window state and its first record is reported in ``batchItemFailures``.
- The same event (same records, same input state) yields the same effects and the same state:
  alerts are put-if-absent, archive keys follow the batch, table writes only move forward; a window's
  first invocation reads the same handoff each time (a shard's handoff changes only at its own window's
  end, a parent's never again), and a final invocation stores the same one.
- The final invocation raises ``WindowCommitError`` unless every dirty device's write landed (or was
  refused as behind), or its handoff was stored; Lambda retries it, synchronously, until it succeeds.
  A first invocation that cannot read its handoff raises it too (Lambda retries the batch).
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
    KinesisRecord,
    Reject,
    StateFormatError,
    decode_records,
    records_from_lambda_event,
)
from service.core.telemetry import parse_rfc3339_ms
from service.core.window_state import WindowState, decode_window_state, encode_window_state
from service.runtime.effects import AppliedBatch, Position, batch_span
from service.runtime.pipeline import Pipeline
from service.runtime.ports import SinkError
from service.runtime.sink_health import BatchSinks
from service.runtime.window_handoffs import WindowHandoffs

STATE_KEY = "vitalstream"
DUE_KEY = "vitalstreamDue"  # devices whose write waits for the next invocation, in write order
HANDOFF_KEY = "vitalstreamHandoff"  # "empty": the shard's own handoff holds no device (none to replace)
LAMBDA_STATE_LIMIT_BYTES = 1_048_576  # Lambda: "at most 1 MB per shard"; past it the window ends early
PACE_MS = 1_000  # about how often Lambda invokes a busy shard (its batching window's default, 1 s)
DRAIN_INVOCATIONS = 5  # near its end, a window's queue of writes is spread over this many invocations


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
    start_ms: int | None = None  # and its start (``window.start``)
    due: tuple[str, ...] = ()  # the state's ``DUE_KEY``, in the order they are to be written
    own_empty: bool = False  # the state's ``HANDOFF_KEY``
    stream: str = ""  # the stream's ARN (``eventSourceARN``)

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> WindowEvent:
        records = event.get("Records") or []
        shard = event.get("shardId") or (records[0].get("eventID", "").partition(":")[0] if records else "")
        window = event.get("window")
        start, end = (window.get("start"), window.get("end")) if isinstance(window, Mapping) else (None, None)
        state = event.get("state") or {}
        due = state.get(DUE_KEY) if isinstance(state, Mapping) else None
        return cls(
            str(shard),
            state,
            bool(event.get("isFinalInvokeForWindow")),
            bool(event.get("isWindowTerminatedEarly")),
            parse_rfc3339_ms(end) if isinstance(end, str) else None,
            parse_rfc3339_ms(start) if isinstance(start, str) else None,
            tuple(dict.fromkeys(str(d) for d in due)) if isinstance(due, list) else (),
            isinstance(state, Mapping) and state.get(HANDOFF_KEY) == "empty",
            str(event.get("eventSourceARN") or (records[0].get("eventSourceARN", "") if records else "")),
        )

    @property
    def first(self) -> bool:
        """The window's first invocation: Lambda passes no state of ours yet."""
        return not isinstance(self.state.get(STATE_KEY), str)


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
    adopted: int = 0  # devices taken over from a handoff (the window's first invocation)
    handed_off: int = 0  # devices handed on to the shard's next window (its final invocation)

    @property
    def queued(self) -> int:
        """Devices whose write waits for a later invocation of the window (``DUE_KEY``)."""
        return len(self.state.get(DUE_KEY) or ())

    @property
    def closed(self) -> bool:
        """The window ended here (its final invocation), or started over past its budget."""
        return not self.state or self.restarted

    def response(self) -> dict[str, Any]:
        return {"state": self.state, "batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


@dataclass(frozen=True, slots=True)
class _Carried:
    """What one invocation hands the next besides the window: the devices whose write waits, in order,
    and whether the shard's own handoff is an empty one."""

    due: list[str]
    own_empty: bool


@dataclass(frozen=True, slots=True)
class WindowProcessor:
    pipeline: Pipeline  # the core and the sinks; ``Pipeline.run`` itself is the windowless path
    handoffs: WindowHandoffs
    budget_bytes: int = 900_000
    writes_per_invocation: int = 50  # device writes a non-final invocation makes at least; the rest wait

    def invoke(
        self, event: Mapping[str, Any], now_ms: int, dead_lettered: Collection[Position] = ()
    ) -> WindowOutcome:
        """One invocation of a shard's window. ``dead_lettered``: positions of rejects an earlier run
        of this very batch already stored; they are not stored again. Raises ``WindowCommitError``
        when the device table did not take every device it had to (final invocation, a state past its
        budget, a stale handoff) or a handoff could not be read or stored."""
        meta = WindowEvent.of(event)
        window = _window_of(meta)
        sinks = BatchSinks()
        carried = _Carried(list(meta.due), meta.own_empty)
        adopted = written = 0
        if meta.first and meta.start_ms is not None and meta.end_ms is not None:
            window, carried, adopted, written = self._take_over(window, meta, sinks)
        batch = records_from_lambda_event(event)
        failures: list[str] = []
        loaded = 0
        applied: AppliedBatch | None = None
        if batch.records or batch.rejects:
            window, applied, loaded, wrote, due = self._process(
                window, batch.records, batch.rejects, now_ms, dead_lettered, sinks, meta, carried.due
            )
            failures, written, carried = applied.failures(), written + wrote, replace(carried, due=due)
        so_far = WindowOutcome({}, failures, loaded, written, adopted=adopted)
        outcome = self._closed_or_carried(window, meta, carried, so_far, sinks)
        if applied is None:
            return outcome
        return replace(outcome, result=applied.result, failed_devices=applied.failed)

    def _take_over(
        self, window: WindowState, meta: WindowEvent, sinks: BatchSinks
    ) -> tuple[WindowState, _Carried, int, int]:
        """The window's first invocation: adopt the devices handed on to it (queued for writing, in
        order), after writing out those of a stale handoff."""
        start_ms, end_ms = meta.start_ms or 0, meta.end_ms or 0
        try:
            takeover = self.handoffs.taken_over(meta.stream, window.shard_id, start_ms, end_ms)
        except SinkError as exc:
            sinks.raised(exc)
            raise WindowCommitError("the window's handoff could not be read", sinks.distinct()) from exc
        written = self._commit(takeover.stale, sinks) if takeover.stale.dirty else 0
        adopted = takeover.adopted
        carried = _Carried(sorted(adopted.dirty), takeover.own_empty)
        return window.adopting(adopted), carried, len(adopted.dirty), written

    def _closed_or_carried(
        self,
        window: WindowState,
        meta: WindowEvent,
        carried: _Carried,
        so_far: WindowOutcome,
        sinks: BatchSinks,
    ) -> WindowOutcome:
        """The outcome: the window ended (written or handed on), started over past its budget, or
        carried on to the next invocation."""
        if meta.final or meta.terminated_early:
            written, handed = self._close(window, meta.end_ms, carried, sinks)
            return replace(
                so_far, written=so_far.written + written, handed_off=handed, errors=sinks.distinct()
            )
        state: dict[str, Any] = {STATE_KEY: _encoded(window)}
        if carried.due:
            state[DUE_KEY] = carried.due
        if carried.own_empty:
            state[HANDOFF_KEY] = "empty"
        if len(json.dumps(state)) > self.budget_bytes:
            written = self._commit(window, sinks)
            state = {STATE_KEY: _encoded(WindowState(window.shard_id))} | (
                {HANDOFF_KEY: "empty"} if carried.own_empty else {}
            )
            return replace(
                so_far,
                state=state,
                written=so_far.written + written,
                restarted=True,
                errors=sinks.distinct(),
            )
        return replace(so_far, state=state, errors=sinks.distinct())

    def _close(
        self, window: WindowState, end_ms: int | None, carried: _Carried, sinks: BatchSinks
    ) -> tuple[int, int]:
        """The window's end: its dirty devices written when they are few, else all handed on in one
        object; returns how many were written and handed on."""
        if end_ms is None or len(window.dirty) <= self.writes_per_invocation:
            written, handed = self._commit(window, sinks), frozenset[str]()
        else:
            written, handed = 0, window.dirty
        if end_ms is not None and (handed or not carried.own_empty):
            try:
                self.handoffs.hand_off(window, handed, end_ms)
            except SinkError as exc:
                sinks.raised(exc)
                raise WindowCommitError("the window's handoff was not stored", sinks.distinct()) from exc
        return written, len(handed)

    def _process(
        self,
        window: WindowState,
        records: list[KinesisRecord],
        rejects: list[Reject],
        now_ms: int,
        dead_lettered: Collection[Position],
        sinks: BatchSinks,
        meta: WindowEvent,
        carried: Sequence[str],
    ) -> tuple[WindowState, AppliedBatch, int, int, list[str]]:
        """The one effects path, holding the window's states; then the window takes the moved ones.
        Written now, ``writes_now`` of them, in ``write_order``: devices whose look changed, then those
        ``carried`` (handed on to the window, or left by earlier invocations). Returned last, for the
        next invocation: the ones left over."""
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
        queue = write_order(changed, carried, after.dirty)
        arrived = max((r.arrival_ms for r in records), default=None)
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
        return after, applied, len(applied.loaded), written, later

    def _commit(self, window: WindowState, sinks: BatchSinks) -> int:
        states, latest = window.pending()
        refused = self.pipeline.effects.save(states, latest, sinks)
        if refused:
            raise WindowCommitError(
                f"{len(refused)} of {len(states)} device states were not written", sinks.distinct()
            )
        return len(states)


def write_order(changed: Collection[str], carried: Sequence[str], dirty: Collection[str]) -> list[str]:
    """The dirty devices an invocation writes first: those whose look ``changed`` (what an operator
    reads off the item), then those ``carried`` from earlier invocations and windows (oldest first).
    The rest of the dirty ones wait for the window's end, which writes them or hands them on."""
    first = sorted(d for d in changed if d in dirty)
    then = [d for d in carried if d in dirty]
    return list(dict.fromkeys([*first, *then]))


def writes_now(queued: int, least: int, end_ms: int | None, arrived_ms: int | None) -> int:
    """How many of ``queued`` writes an invocation makes: ``least``, or its share of spreading the queue
    over the invocations the window has left — taking Lambda to invoke a busy shard about once every
    ``PACE_MS`` (its batch's newest record ``arrived_ms``), and never fewer than ``DRAIN_INVOCATIONS``:
    what is left at the end is handed on, not written in a rush."""
    invocations_left = DRAIN_INVOCATIONS
    if end_ms is not None and arrived_ms is not None:
        invocations_left = max((end_ms - arrived_ms) // PACE_MS, DRAIN_INVOCATIONS)
    return min(queued, max(least, -(-queued // invocations_left)))


def _encoded(window: WindowState) -> str:
    return base64.b64encode(encode_window_state(window)).decode("ascii")


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
