"""A local Kinesis event source mapping: polls each shard as Lambda does and invokes a handler with
Lambda's event shape and Lambda's retry semantics (see ``policy``): in a worker process of the shard's
own (``Invocation(Isolated(...))``, as each shard gets its own sandbox on AWS; ``worker``) or in this
process (``Invocation(handler)``, a callable: tests that inject faults into it).

One thread per shard; a child shard starts only after its parents are finished. A shard is finished
when its iterator ends or, since moto's closed-shard iterators never end, when it is closed and a
read at its tip returns nothing more — and, with tumbling windows (``windows``), when its last
window's final invocation has succeeded, so what the parent's windows kept is stored (in the table,
or in the parent's window handoff) before a child starts.
Checkpoints live in memory: this runner stands in for the managed service, which keeps its own. On
``stop`` an open window gets its final invocation (a few attempts), so the function has stored
everything (a large window hands its devices on rather than writing them: ``runtime.window``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from service.core import KinesisRecord
from service.runtime.adapters._errors import error_code
from service.runtime.adapters.pacing import Backoff
from service.runtime.consumer.shard_cursor import list_shards
from service.tools.esm.events import failure_record, lambda_event
from service.tools.esm.policy import (
    Decision,
    EsmConfig,
    GiveUpReason,
    Invoked,
    Outcome,
    Raised,
    WorkItem,
    decide,
    expired,
)
from service.tools.esm.reading import PolledShard
from service.tools.esm.windows import (
    OpenWindow,
    Window,
    oversized,
    returned_state,
    split_by_window,
    windowed_event,
)
from service.tools.esm.worker import FunctionError, InProcess, Isolated, Sandbox, WorkerSandbox

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient

log = logging.getLogger(__name__)
RETRY_BACKOFF_BASE_S, RETRY_BACKOFF_CAP_S = 0.1, 5.0  # failed invocations
WINDOW_GRACE_MS = 1_000  # an idle shard's window ends this long after its end (late reads)
STOP_FINAL_ATTEMPTS = 3
Handler = Callable[[dict[str, Any], Any], Any]
Destination = Callable[[dict[str, Any]], None]
Observer = Callable[[dict[str, Any], Any], None]


@dataclass
class EsmStats:
    invocations: int = 0
    records_delivered: int = 0
    retries: int = 0
    given_up: int = 0
    final_invocations: int = 0
    windows_ended_early: int = 0
    checkpoints: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a shard poller needs besides the stream: the function (a callable runs in this process,
    ``Isolated`` in a worker process per shard) and where failures go. ``observe``: called here with
    each invocation's event and response (one that returned), e.g. to note what it acknowledged."""

    handler: Handler | Isolated
    destination: Destination
    function_arn: str = "arn:aws:lambda:local:000000000000:function:vitalstream"
    region: str = "us-east-1"
    observe: Observer | None = None

    def sandbox(self, shard_id: str) -> Sandbox:
        if isinstance(self.handler, Isolated):
            return WorkerSandbox(self.handler, f"esm-{shard_id}")
        return InProcess(self.handler)


class _Context:
    function_name = "vitalstream"
    memory_limit_in_mb = 512

    def __init__(self, function_arn: str) -> None:
        self.invoked_function_arn = function_arn
        self.aws_request_id = ""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


class ShardPoller:
    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        stream_arn: str,
        shard: dict[str, Any],
        invocation: Invocation,
        config: EsmConfig,
        stats: EsmStats,
        stop: threading.Event,
        idle_poll_s: float = 0.25,
    ) -> None:
        self._invocation, self._stream_arn = invocation, stream_arn
        self.shard_id: str = shard["ShardId"]
        self._shard = PolledShard(kinesis, stream_name, shard, config, stop, idle_poll_s)
        self._config, self._stats, self._stop = config, stats, stop
        self._retry_backoff = Backoff(base_s=RETRY_BACKOFF_BASE_S, cap_s=RETRY_BACKOFF_CAP_S)
        self._queue: deque[WorkItem[KinesisRecord]] = deque()
        self._open: OpenWindow | None = None
        self.sandbox = invocation.sandbox(self.shard_id)
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self._poll()
        finally:
            self.sandbox.close()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if self._queue:
                if self._enter_window(self._queue[0]):
                    self._invoke_front()
            elif self._shard.done:
                if self._close_window():
                    self.finished.set()
                    return
            else:
                self._close_idle_window()
                try:
                    batch = self._shard.read_batch(window_open=self._open is not None)
                except ClientError as exc:  # the stream API failed beyond retries: keep the shard alive
                    log.warning("shard %s: reading failed (%s); retrying", self.shard_id, error_code(exc))
                    self._shard.restart()
                    self._stop.wait(1.0)
                    continue
                for part in self._parts(batch):
                    self._queue.append(WorkItem(part))
        self._close_window(stopping=True)

    def _parts(self, batch: list[KinesisRecord]) -> list[tuple[KinesisRecord, ...]]:
        if not batch:
            return []
        width = self._config.tumbling_window_s
        return split_by_window(batch, width) if width > 0 else [tuple(batch)]

    # --- invoking ---------------------------------------------------------------------------------

    def _invoke_front(self) -> None:
        item = self._queue.popleft()
        old, fresh = expired(item, int(time.time() * 1000), self._config)
        if old:
            self._give_up(old, GiveUpReason.RECORD_AGE_EXCEEDED, item.attempts + 1)
        if fresh is None:
            return
        outcome = self._invoke(fresh)
        decision = decide(fresh, outcome, self._config)
        self._apply(decision, fresh)
        if self._open is not None and isinstance(outcome, Invoked) and outcome.state is not None:
            self._open.state = outcome.state
            if oversized(outcome.state, self._config.state_limit_bytes):  # Lambda ends the window early
                self._final(self._open, early=True)
                self._open.state = {}
                with self._stats.lock:
                    self._stats.windows_ended_early += 1

    def _invoke(self, item: WorkItem[KinesisRecord]) -> Outcome:
        event = lambda_event(item.records, self._stream_arn, self._invocation.region)
        if self._open is not None:
            event = windowed_event(
                event, self._open.window, self._open.state, self.shard_id, self._stream_arn
            )
        with self._stats.lock:
            self._stats.invocations += 1
            self._stats.records_delivered += len(item.records)
        try:
            response = self._call(event)
        except FunctionError as exc:
            return Raised(str(exc))
        outcome = _outcome_of(response)
        if self._open is None or not isinstance(outcome, Invoked):
            return outcome
        state = returned_state(response)
        if state is None:
            return Raised("a tumbling-window response must carry a state object")
        return Invoked(outcome.failures, state)

    # --- tumbling windows -------------------------------------------------------------------------

    def _enter_window(self, item: WorkItem[KinesisRecord]) -> bool:
        """Before invoking ``item``: end the open window if ``item`` belongs to another one, then open
        ``item``'s. False when the open window could not be ended (the mapping is stopping)."""
        if self._config.tumbling_window_s <= 0:
            return True
        window = Window.of(item.records[0].arrival_ms, self._config.tumbling_window_s)
        if self._open is not None and self._open.window != window and not self._close_window():
            return False
        if self._open is None:
            self._open = OpenWindow(window)
        return True

    def _close_idle_window(self) -> None:
        if self._open is not None and time.time() * 1000 >= self._open.window.end_ms + WINDOW_GRACE_MS:
            self._close_window()

    def _close_window(self, *, stopping: bool = False) -> bool:
        """The open window's final invocation (none open: nothing to do); False when it did not succeed
        (the mapping is stopping)."""
        if self._open is None:
            return True
        if not self._final(self._open, stopping=stopping):
            return False
        self._open = None
        return True

    def _final(self, window: OpenWindow, *, early: bool = False, stopping: bool = False) -> bool:
        """Invoke the window's final invocation until it succeeds, then checkpoint the window."""
        event = windowed_event(
            {"Records": []},
            window.window,
            window.state,
            self.shard_id,
            self._stream_arn,
            final=True,
            early=early,
        )
        attempt = 0
        while True:
            with self._stats.lock:
                self._stats.final_invocations += 1
            try:
                response = self._call(event)
                if returned_state(response) is not None:
                    break
                error = "no state in the response"
            except FunctionError as exc:  # Lambda retries the final invocation
                error = str(exc)
            attempt += 1
            log.warning("shard %s: final invocation of a window failed (%s); retrying", self.shard_id, error)
            if (stopping and attempt >= STOP_FINAL_ATTEMPTS) or (self._stop.is_set() and not stopping):
                return False
            time.sleep(self._retry_backoff.delay(attempt))
        if window.done is not None:
            with self._stats.lock:
                self._stats.checkpoints[self.shard_id] = window.done
        return True

    def _call(self, event: dict[str, Any]) -> Any:
        """One invocation in the shard's sandbox; raises ``FunctionError``."""
        response = self.sandbox.invoke(event, _Context(self._invocation.function_arn))
        if self._invocation.observe is not None:
            self._invocation.observe(event, response)
        return response

    def _apply(self, decision: Decision[KinesisRecord], item: WorkItem[KinesisRecord]) -> None:
        for retry in reversed(decision.retry):
            self._queue.appendleft(retry)
        spent = [r.attempts for r in decision.retry if r.attempts > item.attempts]
        if spent:  # a retry that used an attempt waits, so a struggling sink is not hammered
            self._stop.wait(self._retry_backoff.delay(spent[0]))
        if decision.given_up and decision.reason is not None:
            self._give_up(decision.given_up, decision.reason, item.attempts + 1)
        finished = decision.done + decision.given_up
        with self._stats.lock:
            self._stats.retries += len(decision.retry)
            if finished and self._open is not None:  # checkpointed with the window's final invocation
                self._open.note_done([r.sequence_number for r in finished])
            elif finished:
                self._stats.checkpoints[self.shard_id] = max((r.sequence_number for r in finished), key=int)

    def _give_up(self, records: tuple[KinesisRecord, ...], reason: GiveUpReason, invokes: int) -> None:
        body = failure_record(
            records,
            self._stream_arn,
            self._invocation.function_arn,
            reason.value,
            invokes,
            int(time.time() * 1000),
        )
        self._invocation.destination(body)
        with self._stats.lock:
            self._stats.given_up += len(records)


def _outcome_of(response: Any) -> Outcome:
    """Lambda's reading of a handler response under ReportBatchItemFailures."""
    if response is None:
        return Invoked()
    if isinstance(response, str | bytes):
        try:
            response = json.loads(response)
        except ValueError:
            return Raised("response is not JSON")
    if not isinstance(response, dict):
        return Raised("response is not an object")
    failures = response.get("batchItemFailures") or []
    identifiers = tuple(str(f.get("itemIdentifier") or "") if isinstance(f, dict) else "" for f in failures)
    return Invoked(identifiers)


class EventSourceMapping:
    """Pollers for every shard of a stream, children after parents, re-listing shards every
    ``resync_s`` so shards created by resharding are picked up."""

    def __init__(
        self,
        kinesis: KinesisClient,
        stream_name: str,
        invocation: Invocation,
        config: EsmConfig,
        resync_s: float = 5.0,
        idle_poll_s: float = 0.25,
    ) -> None:
        self._kinesis, self._invocation, self._config = kinesis, invocation, config
        self._stream_name = stream_name
        self._stream_arn = kinesis.describe_stream_summary(StreamName=stream_name)[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        self._resync_s, self._idle_poll_s = resync_s, idle_poll_s
        self.stats = EsmStats()
        self._stop = threading.Event()
        self._pollers: dict[str, ShardPoller] = {}
        self._threads: list[threading.Thread] = []
        self._coordinator = threading.Thread(target=self._coordinate, name="esm-coordinator", daemon=True)

    def start(self) -> EventSourceMapping:
        self._coordinator.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop polling; an invocation in progress finishes first, then each open window's final
        invocation (which writes the window's device states)."""
        self._stop.set()
        for thread in [self._coordinator, *self._threads]:
            if thread.is_alive():
                thread.join(timeout_s)

    def __enter__(self) -> EventSourceMapping:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _coordinate(self) -> None:
        while not self._stop.is_set():
            self._start_ready_shards()
            self._stop.wait(self._resync_s)

    def _start_ready_shards(self) -> None:
        shards = list_shards(self._kinesis.list_shards, self._stream_name)
        known = {s["ShardId"] for s in shards}
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._pollers:
                continue
            parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
            if all(p is None or p not in known or self._finished(p) for p in parents):
                poller = ShardPoller(
                    self._kinesis,
                    self._stream_name,
                    self._stream_arn,
                    shard,
                    self._invocation,
                    self._config,
                    self.stats,
                    self._stop,
                    self._idle_poll_s,
                )
                self._pollers[shard_id] = poller
                thread = threading.Thread(target=poller.run, name=f"esm-{shard_id}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def probes(self) -> list[Any]:
        """The latest probe result of every worker process so far (``worker.Isolated.probe``)."""
        return [
            probe
            for poller in list(self._pollers.values())
            if isinstance(poller.sandbox, WorkerSandbox)
            for probe in poller.sandbox.latest_probes()
        ]

    def _finished(self, shard_id: str) -> bool:
        poller = self._pollers.get(shard_id)
        return poller is not None and poller.finished.is_set()
