"""One shard, one task: read, run the batch through the core and every sink, checkpoint; KCL's lifecycle.

``initialize`` (start from the lease's checkpoint) → ``process_records`` (per batch) → one ending:

- ``shard_ended``: the reader reached the shard's end and every record is done: checkpoint SHARD_END,
  release the lease (children may start now) and report the child shards.
- ``lease_lost``: a renewal or checkpoint found the lease taken: stop at once, write nothing more.
- ``shutdown_requested`` (SIGTERM, or another replica asked for the lease): stop reading, finish the
  batch in hand, checkpoint what is done, then release the lease or hand it to the replica that asked.

Every batch is *prepared* before its sink writes: its span goes into the lease, conditional on owning
it (a replica that lost the lease starts no batch), and a replica that takes the lease over cuts that
span again as one batch (``batching``), so an interrupted batch's sink writes land on the same keys.

Per-device order and the failure rule: when a batch comes back with failures (a sink refused some
devices' records), the whole batch is run again after a jittered back-off, before anything new is
read, and the checkpoint stays before it. Records already applied are skipped by the core and the
archive finds its own object by the span, so retries have no duplicate effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.adapters._errors import CALL_ERRORS, describe
from service.consumer.backoff import Backoff
from service.consumer.batching import BatchCutter
from service.consumer.leases import Sentinel
from service.consumer.logs import bind
from service.consumer.metrics import ConsumerMetrics
from service.consumer.ownership import HeldLease
from service.consumer.reader import ReadResult, ShardReader
from service.core import KinesisRecord
from service.pipeline import BatchOutcome, Pipeline

log = logging.getLogger(__name__)
FENCE_POLL_S = 0.1


class Ending(StrEnum):
    SHARD_ENDED = "shard_ended"
    LEASE_LOST = "lease_lost"
    SHUTDOWN_REQUESTED = "shutdown_requested"


@dataclass(frozen=True, slots=True)
class Pacing:
    """``idle_s`` between reads at the tip; ``min_interval_s`` between any two reads of one shard
    (0.2 s keeps a shard within its 5 GetRecords/s); ``checkpoint_s`` between checkpoints. Neither
    wait applies to a push reader (enhanced fan-out): its ``read`` waits for the next event itself."""

    idle_s: float = 0.2
    min_interval_s: float = 0.2
    checkpoint_s: float = 1.0
    backoff_cap_s: float = 5.0


class ShardConsumer:
    def __init__(
        self,
        held: HeldLease,
        reader: ShardReader,
        pipeline: Pipeline,
        metrics: ConsumerMetrics,
        pacing: Pacing,
        on_children: Callable[[tuple[dict[str, Any], ...]], None] = lambda children: None,
    ) -> None:
        self.held, self._reader, self._pipeline = held, reader, pipeline
        self._metrics, self._pacing, self._on_children = metrics, pacing, on_children
        self._shutdown = asyncio.Event()
        self._backoff = Backoff(cap_s=pacing.backoff_cap_s)
        self._pending: list[KinesisRecord] = []
        self._dead_lettered: set[tuple[str, int | None]] = set()  # the pending batch's stored rejects
        self._cutter = BatchCutter(str(held.lease.checkpoint), held.lease.batch_span)
        self._acked: str | None = None
        self._checkpointed = str(held.lease.checkpoint)
        self._checkpointed_at = time.monotonic()
        self._ended = False

    @property
    def shard_id(self) -> str:
        return self.held.shard_id

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def shard_closed(self) -> None:
        """ListShards reports the shard closed: a read at its tip with nothing more ends it."""
        self._reader.closed = True

    async def run(self) -> Ending:
        bind(shard_id=self.shard_id)
        log.info("initialize", extra={"checkpoint": self._checkpointed})
        try:
            return await self._finish(await self._loop())
        finally:
            await self._reader.close()
            with contextlib.suppress(KeyError):
                self._metrics.millis_behind.remove(self.shard_id)

    async def _loop(self) -> Ending:
        read_now = True
        last_read = 0.0
        while True:
            if self.held.lost.is_set() or self._shutdown.is_set() or self.held.handoff_requested:
                return self._stopped()
            if not self._pending:
                self._pending = self._cutter.next_batch(ended=self._ended)
            if not self._pending:
                if self._ended:
                    return Ending.SHARD_ENDED
                wait = (self._pacing.min_interval_s if read_now else self._pacing.idle_s) - (
                    time.monotonic() - last_read
                )
                if wait > 0 and not self._reader.push and await self._pause(wait):
                    continue
                last_read = time.monotonic()
                result = await self._read()
                if result is not None:
                    read_now = self._cutter.replaying or (
                        bool(result.records) and (result.millis_behind or 0) > 0
                    )
                    self._cutter.add(result.records)
                continue
            if not await self._wait_unfenced():
                return self._stopped()
            if await self._prepare():
                await self._process_records()
                await self._maybe_checkpoint()

    async def _wait_unfenced(self) -> bool:
        """Wait while renewals are failing (fenced); False when the lease was lost or shutdown was
        requested first. Shutdown must not wait for a renewal: the lease loop has stopped renewing."""
        while self.held.fenced():
            if await self._pause(FENCE_POLL_S):
                return False
        return not self.held.lost.is_set()

    def _stopped(self) -> Ending:
        return Ending.LEASE_LOST if self.held.lost.is_set() else Ending.SHUTDOWN_REQUESTED

    async def _read(self) -> ReadResult | None:
        try:
            result = await self._reader.read()
        except CALL_ERRORS as exc:
            code = describe(exc)
            self._metrics.throttles.labels("GetRecords").inc()
            delay = self._backoff.next()
            log.warning("read failed (%s); backing off %.2f s", code, delay, extra={"error": code})
            await self._pause(delay)
            return None
        self._backoff.reset()
        if result.millis_behind is not None:
            self._metrics.millis_behind.labels(self.shard_id).set(result.millis_behind)
        if result.child_shards:
            self._on_children(result.child_shards)
        self._ended = result.ended
        return result

    async def _prepare(self) -> bool:
        first, last = self._pending[0].sequence_number, self._pending[-1].sequence_number
        try:
            if await self.held.prepare(first, last):
                return True
            log.warning("lease_lost at prepare", extra={"first_sequence": first, "last_sequence": last})
        except CALL_ERRORS as exc:
            code = describe(exc)
            self._metrics.throttles.labels("DynamoDB").inc()
            delay = self._backoff.next()
            log.warning("preparing the batch failed (%s); backing off %.2f s", code, delay)
            await self._pause(delay)
        return False

    async def _process_records(self) -> None:
        records = self._pending
        bind(first_sequence=records[0].sequence_number, last_sequence=records[-1].sequence_number)
        started = time.monotonic()
        try:
            outcome = await asyncio.to_thread(
                self._pipeline.run, self.shard_id, records, _now_ms(), (), frozenset(self._dead_lettered)
            )
        except Exception:  # a bug or an unexpected SDK error: the batch is retried, the shard lives on
            log.exception("process_records failed; retrying the batch")
            self._metrics.records.labels("retried").inc(len(records))
            await self._pause(self._backoff.next())
            return
        self._metrics.batch_seconds.observe(time.monotonic() - started)
        self._account(outcome, records)
        if "dead_letter" not in outcome.failed_sinks:
            self._dead_lettered.update(
                (r.sequence_number, r.sub_sequence_number) for r in outcome.result.rejects
            )
        if outcome.failures:
            delay = self._backoff.next()
            log.warning(
                "sinks failed for %d devices; the batch runs again in %.2f s",
                len(outcome.failed_devices),
                delay,
                extra={"sinks": sorted(outcome.failed_sinks)},
            )
            await self._pause(delay)
        else:
            self._pending = []
            self._dead_lettered.clear()
            self._backoff.reset()
            self._acked = records[-1].sequence_number

    def _account(self, outcome: BatchOutcome, records: list[KinesisRecord]) -> None:
        m, result, failed = self._metrics, outcome.result, outcome.failed_devices
        lowest = min((int(s) for s in outcome.failures), default=None)
        retried = 0 if lowest is None else sum(1 for r in records if r.seq_int >= lowest)
        now_ms = _now_ms()
        processed = 0
        for record in result.processed:
            if record.device_id not in failed:
                processed += 1
                m.latency.observe(max(now_ms - record.event_ms, 0) / 1000)
        m.records.labels("processed").inc(processed)
        m.records.labels("duplicate").inc(result.duplicates + result.redelivered)
        m.records.labels("retried").inc(retried)
        if "dead_letter" not in outcome.failed_sinks:
            m.records.labels("rejected").inc(len(result.rejects))
            for reject in result.rejects:
                m.dead_letters.labels(str(reject.reason)).inc()
        for alert in result.alerts:
            if alert.deviceId not in failed:
                m.alerts.labels(str(alert.type)).inc()
        for sink in outcome.failed_sinks:
            m.sink_errors.labels(sink).inc()

    async def _maybe_checkpoint(self) -> None:
        due = time.monotonic() - self._checkpointed_at >= self._pacing.checkpoint_s
        if self._acked is not None and self._acked != self._checkpointed and due:
            await self._checkpoint(self._acked)

    async def _checkpoint(self, sequence: str) -> bool:
        try:
            if not await self.held.checkpoint(sequence):
                log.warning("lease_lost at checkpoint", extra={"checkpoint": sequence})
                return False
        except CALL_ERRORS as exc:
            code = describe(exc)
            self._metrics.throttles.labels("DynamoDB").inc()
            log.warning("checkpoint failed (%s); kept for the next one", code)
            return False
        self._metrics.checkpoints.inc()
        self._checkpointed, self._checkpointed_at = sequence, time.monotonic()
        return True

    async def _finish(self, ending: Ending) -> Ending:
        if ending is Ending.SHARD_ENDED:
            while not await self._checkpoint(Sentinel.SHARD_END):
                if self.held.lost.is_set():
                    return Ending.LEASE_LOST
                await asyncio.sleep(self._backoff.next())
            self._metrics.lease_events.labels("ended").inc()
        elif ending is Ending.SHUTDOWN_REQUESTED and self._acked not in (None, self._checkpointed):
            await self._checkpoint(str(self._acked))
        if ending is not Ending.LEASE_LOST:
            with contextlib.suppress(*CALL_ERRORS):
                await self._let_go(
                    handoff=ending is Ending.SHUTDOWN_REQUESTED and self.held.handoff_requested
                )
        else:
            self._metrics.lease_events.labels("lost").inc()
        log.info(ending.value, extra={"checkpoint": self._checkpointed})
        return ending

    async def _let_go(self, *, handoff: bool) -> None:
        if handoff:
            if await self.held.hand_over():
                self._metrics.lease_events.labels("handed_over").inc()
                log.info("handed over", extra={"to": self.held.lease.pending_owner})
        elif await self.held.release():
            self._metrics.lease_events.labels("released").inc()

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when shutdown was requested or the lease was lost meanwhile."""
        stop = asyncio.ensure_future(self._shutdown.wait())
        lost = asyncio.ensure_future(self.held.lost.wait())
        try:
            done, _ = await asyncio.wait({stop, lost}, timeout=max(seconds, 0.0))
        finally:
            stop.cancel()
            lost.cancel()
        return bool(done)


def _now_ms() -> int:
    return int(time.time() * 1000)
